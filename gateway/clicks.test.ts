// ClickEmitter: batching, encoding, retry with the same batch id, bound, shutdown flush.
import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ClickBatchSchema, UserAgentClass } from "../gen/switchboard/events/v1/events_pb.js";
import { openMemoryEngine, type Engine } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import { unavailable } from "../platform/errors.js";
import type { EventBus, PublishAck } from "../platform/ports/event-bus.js";
import { MemoryClickStatsStore } from "../services/analytics/adapters/memory-click-stats.js";
import { startClickConsumer } from "../services/analytics/consumer.js";
import { CLICK_BATCH_ALL, CLICKS_ALL, CLICKS_STREAM } from "../services/redirect/subjects.js";
import { ClickEmitter } from "./clicks.js";

const log = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";

interface Sent {
  subject: string;
  data: Uint8Array;
  msgId: string;
}

/** Wraps a bus: records durable publishes; `failNext` makes the next n publishes fail. */
function spyBus(bus: EventBus) {
  const sent: Sent[] = [];
  const state = { failNext: 0, afterStore: false };
  const spy: EventBus = {
    publish: (s, d) => bus.publish(s, d),
    subscribe: (s, h) => bus.subscribe(s, h),
    ensureStream: (n, s, o) => bus.ensureStream(n, s, o),
    consume: (s, d, h, o) => bus.consume(s, d, h, o),
    async publishDurable(subject, data, msgId): Promise<PublishAck> {
      if (state.failNext > 0) {
        state.failNext--;
        // afterStore: the stream stored it but the ack was lost (worst case for duplicates).
        if (state.afterStore) await bus.publishDurable(subject, data, msgId);
        throw unavailable("nats");
      }
      sent.push({ subject, data, msgId });
      return bus.publishDurable(subject, data, msgId);
    },
  };
  return { spy, sent, state };
}

describe("ClickEmitter", () => {
  let engine: Engine;
  beforeEach(() => {
    engine = openMemoryEngine(silentLog);
  });
  afterEach(async () => {
    await engine.close();
  });

  it("publishes one ClickBatch per flush with per-click event ids and the ClickEvent fields", async () => {
    const { spy, sent } = spyBus(engine.bus);
    const e = new ClickEmitter({ bus: spy, gatewayId: "gw.host-1", log, flushMs: 20 });
    const t0 = Date.now();
    e.record("abc", "https://twitter.com/x/status/1", CHROME, false);
    e.record("abc", undefined, "Slackbot-LinkExpanding 1.0", false);
    e.record("xyz", "https://T.CO/", CHROME, true);
    e.record("xyz", undefined, undefined, false);
    expect(sent).toHaveLength(0); // nothing on the request path
    expect(await e.drain(2_000)).toBe(true);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.subject).toBe("switchboard.clicks.batch.gw_host-1");
    const b = fromBinary(ClickBatchSchema, sent[0]!.data);
    expect(b.clicks.map((c) => [c.code, c.referrer, c.userAgentClass, c.isHead, c.gatewayId])).toEqual([
      ["abc", "twitter.com", UserAgentClass.HUMAN, false, "gw.host-1"],
      ["abc", "", UserAgentClass.PREVIEW, false, "gw.host-1"],
      ["xyz", "t.co", UserAgentClass.HUMAN, true, "gw.host-1"],
      ["xyz", "", UserAgentClass.UNKNOWN, false, "gw.host-1"],
    ]);
    for (const c of b.clicks) {
      expect(timestampMs(c.time!)).toBeGreaterThanOrEqual(t0);
      expect(timestampMs(c.time!)).toBeLessThanOrEqual(Date.now());
    }
    const ids = b.clicks.map((c) => c.eventId);
    expect(new Set(ids).size).toBe(4);
    expect(ids).not.toContain(sent[0]!.msgId);
    expect(e.stats).toMatchObject({ emitted: 4, published: 4, batches: 1, dropped: 0 });
    await e.close();
  });

  it("stamps a click with the link it redirected through (owner, creation ms); none without a usable link", async () => {
    const { spy, sent } = spyBus(engine.bus);
    const e = new ClickEmitter({ bus: spy, gatewayId: "g", log, flushMs: 60_000 });
    const link = { ownerId: "alice-ü", createdAtMs: 1_795_000_000_123 };
    e.record("st", undefined, CHROME, false, link);
    e.record("st", undefined, CHROME, false, link);
    e.record("st", undefined, CHROME, false, { ownerId: "bob", createdAtMs: 1 });
    e.record("st", undefined, CHROME, false);
    e.record("st", undefined, CHROME, false, { ownerId: "", createdAtMs: 5 }); // an entry without owner
    expect(await e.drain(2_000)).toBe(true);
    const b = fromBinary(ClickBatchSchema, sent[0]!.data);
    expect(b.clicks.map((c) => [c.code, c.linkOwnerId, c.linkCreateTimeMs, c.gatewayId])).toEqual([
      ["st", "alice-ü", 1_795_000_000_123n, "g"],
      ["st", "alice-ü", 1_795_000_000_123n, "g"],
      ["st", "bob", 1n, "g"],
      ["st", "", 0n, "g"],
      ["st", "", 0n, "g"],
    ]);
    await e.close();
  });

  it("the analytics consumer counts stamped clicks exactly as before", async () => {
    await engine.bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL]);
    const store = new MemoryClickStatsStore();
    const consumer = startClickConsumer({ bus: engine.bus, store, log });
    const e = new ClickEmitter({ bus: engine.bus, gatewayId: "g", log, flushMs: 5 });
    const link = { ownerId: "alice", createdAtMs: Date.now() };
    for (let i = 0; i < 5; i++) e.record("sc", "https://t.co/x", CHROME, false, link);
    e.record("sc", undefined, "Slackbot-LinkExpanding 1.0", false, link);
    e.record("sc", undefined, CHROME, true, link);
    expect(await e.drain(2_000)).toBe(true);
    for (let i = 0; i < 200 && consumer.stats.counted < 7; i++) await sleep(10);
    await sleep(30);
    expect(consumer.stats).toMatchObject({ counted: 7, malformed: 0, duplicates: 0 });
    const stats = await store.get("sc");
    expect(stats).toMatchObject({ total: 7, human: 5, bot: 2, perReferrer: [{ referrer: "t.co", human: 5 }] });
    await e.close();
    await consumer.close();
  });

  it("flushes by size (batchSize) and by time (flushMs)", async () => {
    const { spy, sent } = spyBus(engine.bus);
    const e = new ClickEmitter({ bus: spy, gatewayId: "g", log, flushMs: 60_000, batchSize: 10 });
    for (let i = 0; i < 9; i++) e.record("c", undefined, CHROME, false);
    await sleep(20);
    expect(sent).toHaveLength(0); // below batchSize: waits for the timer (or a drain)
    for (let i = 0; i < 16; i++) e.record("c", undefined, CHROME, false);
    // batchSize reached: the next turn flushes everything waiting, in batches of at most 10.
    for (let i = 0; i < 50 && sent.length < 3; i++) await sleep(5);
    expect(sent.map((s) => fromBinary(ClickBatchSchema, s.data).clicks.length)).toEqual([10, 10, 5]);
    expect(e.pending).toBe(0);
    const timed = new ClickEmitter({ bus: spy, gatewayId: "g", log, flushMs: 10 });
    timed.record("c", undefined, CHROME, false);
    for (let i = 0; i < 100 && sent.length < 4; i++) await sleep(5);
    expect(sent).toHaveLength(4);
    await e.close();
    await timed.close();
  });

  it("retries a failed batch with the same batch id and event ids; the consumer counts each click once", async () => {
    const { spy, sent, state } = spyBus(engine.bus);
    await engine.bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL]);
    const store = new MemoryClickStatsStore();
    const consumer = startClickConsumer({ bus: engine.bus, store, log });
    const e = new ClickEmitter({ bus: spy, gatewayId: "g", log, flushMs: 5 });
    await e.drain(); // stream known
    state.failNext = 2;
    state.afterStore = true; // the first try is stored, its ack lost
    for (let i = 0; i < 7; i++) e.record("rt", undefined, CHROME, false);
    expect(await e.drain(5_000)).toBe(true);
    expect(e.stats.retries).toBe(2);
    expect(sent).toHaveLength(1);
    for (let i = 0; i < 200 && (await store.get("rt")).human < 7; i++) await sleep(10);
    await sleep(50);
    expect((await store.get("rt")).human).toBe(7);
    await e.close();
    await consumer.close();
  });

  it("drops (and counts) clicks beyond maxQueue; close() flushes what is queued", async () => {
    const { spy, sent } = spyBus(engine.bus);
    const registry = new Registry();
    const e = new ClickEmitter({ bus: spy, gatewayId: "g", log, registry, maxQueue: 5, flushMs: 60_000 });
    for (let i = 0; i < 8; i++) e.record("q", undefined, CHROME, false);
    expect(e.stats).toMatchObject({ emitted: 5, dropped: 3 });
    expect(await registry.getSingleMetricAsString("redirect_clicks_dropped_total")).toMatch(/ 3$/m);
    await e.close();
    expect(sent.map((s) => fromBinary(ClickBatchSchema, s.data).clicks.length)).toEqual([5]);
    e.record("q", undefined, CHROME, false); // after close: dropped
    expect(e.stats.dropped).toBe(4);
  });

  it("live watchers get each batch once from the durable publish itself", async () => {
    const got: string[] = [];
    const off = engine.bus.subscribe(CLICK_BATCH_ALL, (m) => {
      got.push(m.subject);
    });
    const e = new ClickEmitter({ bus: engine.bus, gatewayId: "g", log, flushMs: 5 });
    for (let i = 0; i < 3; i++) e.record("lv", undefined, CHROME, false);
    await e.drain();
    for (let i = 0; i < 50 && got.length < 1; i++) await sleep(5);
    await sleep(30); // a second copy would have arrived by now
    expect(got).toEqual(["switchboard.clicks.batch.g"]);
    off();
    await e.close();
  });
});
