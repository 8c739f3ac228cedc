import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import type { ClickRecord, ClickStatsStore } from "./ports.js";

/** The ClickStatsStore contract; run by every adapter's test file. */
export function clickStatsConformance(make: () => Promise<ClickStatsStore>): void {
  const click = (code: string, over: Partial<ClickRecord> = {}): ClickRecord => ({
    eventId: randomUUID(),
    code,
    time: new Date("2026-11-20T10:00:00Z"),
    referrer: "twitter.com",
    human: true,
    ...over,
  });
  const now = new Date("2026-11-22T12:00:00Z");

  it("aggregates total, human/bot, per day (window) and per referrer (human only)", async () => {
    const s = await make();
    const code = `c${randomUUID().slice(0, 8)}`;
    await s.record(click(code));
    await s.record(click(code, { referrer: "" }));
    await s.record(click(code, { human: false, referrer: "slack.com" }));
    await s.record(click(code, { time: new Date("2026-11-21T23:59:59Z") }));
    await s.record(click(code, { time: new Date("2026-01-01T00:00:00Z") }));
    expect(await s.get(code, { days: 7, now })).toEqual({
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
    });
    expect(await s.get(`none${code}`, { now })).toEqual({ total: 0, human: 0, bot: 0, perDay: [], perReferrer: [] });
  });

  it("counts an event id once, even when recorded again concurrently", async () => {
    const s = await make();
    const code = `d${randomUUID().slice(0, 8)}`;
    const c = click(code);
    expect(await s.record(c)).toBe(true);
    expect(await s.record(c)).toBe(false);
    const other = click(code);
    const results = await Promise.all(Array.from({ length: 8 }, () => s.record(other)));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await s.get(code, { now })).human).toBe(2);
  });
}
