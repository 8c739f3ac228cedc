import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import { clickBatchId } from "./batch.js";
import type { ClickBatchRef, ClickRecord, ClickStatsStore } from "./ports.js";

/** A store under test, with the hook that makes its next recordBatch apply and then fail. */
export type ClickStatsStoreUnderTest = ClickStatsStore & { failNextRecordAfterWrite(): void };

let nextSeq = 1_000_000 + Math.floor(Math.random() * 1_000_000);

/** The ClickStatsStore contract; run by every adapter's test file. */
export function clickStatsConformance(make: () => Promise<ClickStatsStoreUnderTest>): void {
  const click = (code: string, over: Partial<ClickRecord> = {}): ClickRecord => ({
    eventId: randomUUID(),
    code,
    time: new Date("2026-11-20T10:00:00Z"),
    referrer: "twitter.com",
    human: true,
    country: "",
    ...over,
  });
  const ref = (clicks: readonly ClickRecord[], seq = nextSeq++): ClickBatchRef => ({ id: clickBatchId(clicks.map((c) => c.eventId)), seq });
  const now = new Date("2026-11-22T12:00:00Z");
  const newCode = (p: string) => `${p}${randomUUID().slice(0, 8)}`;
  /** Every batch recorded so far is acked: the store may fold them. */
  const allAcked = (s: ClickStatsStore) =>
    s.reportProgress({ durable: "conformance", ackFloorSeq: nextSeq - 1, pendingMessages: 0, pendingClicks: 0, oldestPending: undefined, at: new Date() });

  it("aggregates total, human/bot, per day (window) and per referrer (human only), over batches and codes", async () => {
    const s = await make();
    const code = newCode("c");
    const other = newCode("o");
    const b1 = [click(code), click(code, { referrer: "" }), click(other), click(code, { human: false, referrer: "slack.com" })];
    const b2 = [click(code, { time: new Date("2026-11-21T23:59:59Z") }), click(code, { time: new Date("2026-01-01T00:00:00Z") })];
    expect(await s.recordBatch(ref(b1), b1)).toEqual({ counted: 4, duplicate: false });
    expect(await s.recordBatch(ref(b2), b2)).toEqual({ counted: 2, duplicate: false });
    await allAcked(s);
    const want = {
      total: 5,
      human: 4,
      bot: 1,
      perDay: [
        { day: "2026-11-20", human: 2, bot: 1 },
        { day: "2026-11-21", human: 1, bot: 0 },
      ],
      perReferrer: [
        { referrer: "twitter.com", human: 3 },
        { referrer: "", human: 1 },
      ],
    };
    expect(await s.get(code, { days: 7, now })).toMatchObject(want);
    expect(await s.get(other, { days: 7, now })).toMatchObject({ total: 1, human: 1 });
    expect(await s.get(`none${code}`, { now })).toMatchObject({ total: 0, human: 0, bot: 0, perDay: [], perReferrer: [] });
    // Reported again with nothing new: the same answer; then more clicks on top.
    await allAcked(s);
    expect(await s.get(code, { days: 7, now })).toMatchObject(want);
    const b3 = [click(code), click(code, { human: false })];
    await s.recordBatch(ref(b3), b3);
    await allAcked(s);
    expect(await s.get(code, { days: 7, now })).toMatchObject({
      total: 7,
      human: 5,
      bot: 2,
      perDay: [
        { day: "2026-11-20", human: 3, bot: 2 },
        { day: "2026-11-21", human: 1, bot: 0 },
      ],
      perReferrer: [
        { referrer: "twitter.com", human: 4 },
        { referrer: "", human: 1 },
      ],
    });
    await allAcked(s);
    expect(await s.get(code, { days: 7, now })).toMatchObject({ total: 7, human: 5, bot: 2 });
  });

  it("counts human clicks per known country, most first, over batches and folds; unknown and bot clicks are not listed", async () => {
    const s = await make();
    const code = newCode("g");
    const b1 = [click(code, { country: "DE" }), click(code, { country: "BR" }), click(code, { country: "DE" }), click(code), click(code, { country: "FR", human: false })];
    const b2 = [click(code, { country: "BR" }), click(code, { country: "BR" }), click(code, { country: "JP" })];
    await s.recordBatch(ref(b1), b1);
    await allAcked(s);
    expect((await s.get(code, { now })).perCountry).toEqual([
      { country: "DE", human: 2 },
      { country: "BR", human: 1 },
    ]);
    await s.recordBatch(ref(b2), b2);
    await allAcked(s);
    expect(await s.get(code, { now })).toMatchObject({
      total: 8,
      human: 7,
      perCountry: [
        { country: "BR", human: 3 },
        { country: "DE", human: 2 },
        { country: "JP", human: 1 },
      ],
    });
    expect((await s.get(`none${code}`, { now })).perCountry).toEqual([]);
  });

  it("a redelivered batch (same id, same seq) counts once, also after it was folded", async () => {
    const s = await make();
    const code = newCode("r");
    const b = [click(code), click(code), click(code, { human: false })];
    const r = ref(b);
    expect(await s.recordBatch(r, b)).toEqual({ counted: 3, duplicate: false });
    expect(await s.recordBatch(r, b)).toEqual({ counted: 3, duplicate: false });
    await allAcked(s);
    expect(await s.get(code, { now })).toMatchObject({ total: 3, human: 2, bot: 1 });
    // A slow duplicate delivery landing after the fold.
    expect(await s.recordBatch(r, b)).toEqual({ counted: 3, duplicate: false });
    await allAcked(s);
    expect(await s.get(code, { now })).toMatchObject({ total: 3, human: 2, bot: 1 });
  });

  it("a write that timed out but had applied, then retried, counts once", async () => {
    const s = await make();
    const code = newCode("t");
    const b = [click(code), click(code, { referrer: "t.co" })];
    const r = ref(b);
    s.failNextRecordAfterWrite();
    await expect(s.recordBatch(r, b)).rejects.toMatchObject({ kind: "Unavailable" });
    expect(await s.recordBatch(r, b)).toEqual({ counted: 2, duplicate: false });
    await allAcked(s);
    expect(await s.get(code, { now })).toMatchObject({ total: 2, human: 2, perReferrer: [{ referrer: "t.co", human: 1 }, { referrer: "twitter.com", human: 1 }] });
  });

  it("consumers racing on the same batch count it once", async () => {
    const s = await make();
    const code = newCode("x");
    const b = Array.from({ length: 20 }, () => click(code));
    const r = ref(b);
    const results = await Promise.all(Array.from({ length: 8 }, () => s.recordBatch(r, b)));
    expect(results).toEqual(Array.from({ length: 8 }, () => ({ counted: 20, duplicate: false })));
    await allAcked(s);
    expect((await s.get(code, { now })).human).toBe(20);
  });

  it("a republished batch (same clicks, another seq) is a duplicate and counts nothing", async () => {
    const s = await make();
    const code = newCode("p");
    const b = [click(code), click(code)];
    const first = ref(b);
    expect(await s.recordBatch(first, b)).toEqual({ counted: 2, duplicate: false });
    expect(await s.recordBatch(ref(b), b)).toEqual({ counted: 0, duplicate: true });
    await allAcked(s);
    expect(await s.recordBatch(ref(b), b)).toEqual({ counted: 0, duplicate: true });
    await allAcked(s);
    expect((await s.get(code, { now })).human).toBe(2);
  });

  it("answers the last reported progress as the numbers' freshness", async () => {
    const s = await make();
    const code = newCode("f");
    const oldest = new Date(Date.now() - 5_000);
    const at = new Date();
    const p = { durable: `conformance-${randomUUID().slice(0, 6)}`, ackFloorSeq: 0, pendingMessages: 12, pendingClicks: 6_000, oldestPending: oldest, at };
    await s.reportProgress(p);
    expect((await s.get(code, { now })).freshness).toEqual(p);
    // A lag-only report (no fold) is the freshness all the same.
    const later = { ...p, pendingMessages: 3, pendingClicks: 1_500, at: new Date(at.getTime() + 1_000) };
    await s.reportProgress(later, { fold: false });
    expect((await s.get(code, { now })).freshness).toEqual(later);
  });
}
