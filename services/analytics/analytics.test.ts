import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ClickBatchSchema, ClickEventSchema, UserAgentClass } from "../../gen/switchboard/events/v1/events_pb.js";
import { openMemoryEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { unavailable } from "../../platform/errors.js";
import { CLICKS_ALL, CLICKS_STREAM, clickBatchSubject, clickSubject } from "../redirect/subjects.js";
import { MemoryClickStatsStore } from "./adapters/memory-click-stats.js";
import { classifyUserAgent, isHumanClick, referrerHost } from "./classify.js";
import { clickStatsConformance } from "./click-stats.conformance.js";
import { clickBatchId } from "./batch.js";
import { FOLD_PACE, decodeClickBatch, startClickConsumer } from "./consumer.js";
import type { ClickBatchRef, ClickRecord, ClickStatsStore, RecordBatchResult } from "./ports.js";
import { createClickStatsStore } from "./store.js";

const log = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, f: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe("classifyUserAgent", () => {
  const chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
  it.each([
    [chrome, UserAgentClass.HUMAN],
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", UserAgentClass.HUMAN],
    ["Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", UserAgentClass.PREVIEW],
    ["facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", UserAgentClass.PREVIEW],
    ["Twitterbot/1.0", UserAgentClass.PREVIEW],
    ["LinkedInBot/1.0 (compatible; Mozilla/5.0)", UserAgentClass.PREVIEW],
    ["Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", UserAgentClass.PREVIEW],
    ["WhatsApp/2.23.20.0 A", UserAgentClass.PREVIEW],
    ["TelegramBot (like TwitterBot)", UserAgentClass.PREVIEW],
    ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", UserAgentClass.BOT],
    ["Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", UserAgentClass.BOT],
    ["curl/8.5.0", UserAgentClass.BOT],
    ["python-requests/2.31", UserAgentClass.BOT],
    ["Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0", UserAgentClass.BOT],
    ["", UserAgentClass.UNKNOWN],
    [undefined, UserAgentClass.UNKNOWN],
    ["SomethingElse/1.0", UserAgentClass.UNKNOWN],
  ])("%s -> %s", (ua, cls) => {
    expect(classifyUserAgent(ua)).toBe(cls);
  });

  it("counts only human GETs as human clicks", () => {
    expect(isHumanClick(UserAgentClass.HUMAN, false)).toBe(true);
    expect(isHumanClick(UserAgentClass.HUMAN, true)).toBe(false);
    expect(isHumanClick(UserAgentClass.PREVIEW, false)).toBe(false);
    expect(isHumanClick(UserAgentClass.UNKNOWN, false)).toBe(false);
  });

  it("extracts the referrer host only", () => {
    expect(referrerHost("https://Twitter.com/some/path?q=1")).toBe("twitter.com");
    expect(referrerHost("http://user:pw@news.example.org:8080/x")).toBe("news.example.org");
    expect(referrerHost("android-app://com.slack/")).toBe("com.slack");
    expect(referrerHost("not a url")).toBe("");
    expect(referrerHost(undefined)).toBe("");
  });
});

describe("MemoryClickStatsStore conformance", () => {
  clickStatsConformance(async () => new MemoryClickStatsStore());
});

describe("MemoryClickStatsStore", () => {
  it("is shared per engine", async () => {
    const engine = openMemoryEngine(silentLog);
    expect(createClickStatsStore(engine)).toBe(createClickStatsStore(engine));
    await engine.close();
  });
});

describe("clickBatchId", () => {
  it("depends on the event ids and their order only", () => {
    expect(clickBatchId(["a", "b"])).toBe(clickBatchId(["a", "b"]));
    expect(clickBatchId(["a", "b"])).not.toBe(clickBatchId(["b", "a"]));
    expect(clickBatchId(["ab"])).not.toBe(clickBatchId(["a", "b"]));
    expect(clickBatchId(["a"])).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});

describe("click consumer (memory bus)", () => {
  let engine: Engine;
  beforeEach(async () => {
    engine = openMemoryEngine(silentLog);
    await engine.bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL]);
  });
  afterEach(async () => {
    await engine.close();
  });

  const event = (id: string, cls = UserAgentClass.HUMAN, isHead = false) =>
    toBinary(
      ClickEventSchema,
      create(ClickEventSchema, {
        eventId: id,
        code: "k1",
        time: timestampFromMs(Date.parse("2026-11-20T10:00:00Z")),
        referrer: "t.co",
        userAgentClass: cls,
        isHead,
        gatewayId: "g",
      }),
    );

  /** A store that runs `before` / `after` around each recordBatch of the real one. */
  const wrapped = (
    inner: MemoryClickStatsStore,
    hooks: { before?: (b: ClickBatchRef, clicks: readonly ClickRecord[]) => void; after?: (b: ClickBatchRef, clicks: readonly ClickRecord[]) => void },
  ): ClickStatsStore => ({
    recordBatch: async (b, clicks): Promise<RecordBatchResult> => {
      hooks.before?.(b, clicks);
      const r = await inner.recordBatch(b, clicks);
      hooks.after?.(b, clicks);
      return r;
    },
    reportProgress: (p) => inner.reportProgress(p),
    get: (code, q) => inner.get(code, q),
  });

  it("counts each event once, excluding bots and HEAD from human counts", async () => {
    const store = new MemoryClickStatsStore();
    const c = startClickConsumer({ bus: engine.bus, store, log });
    await engine.bus.publishDurable(clickSubject("k1"), event("a"), "a");
    await engine.bus.publishDurable(clickSubject("k1"), event("b", UserAgentClass.PREVIEW), "b");
    await engine.bus.publishDurable(clickSubject("k1"), event("c", UserAgentClass.HUMAN, true), "c");
    await engine.bus.publishDurable(clickSubject("k1"), event("d", UserAgentClass.BOT), "d");
    // The same event again under another msgId (JetStream dedupe window passed): counted once.
    await engine.bus.publishDurable(clickSubject("k1"), event("a"), "a-again");
    await until("5 handled", () => c.stats.counted + c.stats.duplicates === 5);
    const st = await store.get("k1", { now: new Date("2026-11-21T00:00:00Z") });
    expect(st).toMatchObject({ total: 4, human: 1, bot: 3 });
    expect(c.stats.duplicates).toBe(1);
    await c.close();
  });

  it("a failed record is redelivered and then counted exactly once", async () => {
    const inner = new MemoryClickStatsStore();
    let failures = 2;
    // Written, but the answer is lost (a write timeout that had applied): worst case.
    const flaky = wrapped(inner, {
      after: () => {
        if (failures-- > 0) throw unavailable("cassandra");
      },
    });
    const c = startClickConsumer({ bus: engine.bus, store: flaky, log });
    await engine.bus.publishDurable(clickSubject("k1"), event("x"), "x");
    await until("redelivered and acked", () => c.stats.batches === 1, 10_000);
    expect(c.stats.failures).toBe(2);
    expect((await inner.get("k1", { now: new Date("2026-11-21T00:00:00Z") })).human).toBe(1);
    await c.close();
  });

  const click = (id: string, code = "k1", cls = UserAgentClass.HUMAN) =>
    create(ClickEventSchema, {
      eventId: id,
      code,
      time: timestampFromMs(Date.parse("2026-11-20T10:00:00Z")),
      referrer: "t.co",
      userAgentClass: cls,
      gatewayId: "g",
    });
  const batch = (...clicks: ReturnType<typeof click>[]) => toBinary(ClickBatchSchema, create(ClickBatchSchema, { clicks }));
  const day = { now: new Date("2026-11-21T00:00:00Z") };

  it("decodeClickBatch reads what toBinary(ClickBatch) writes (unknown and defaulted fields too)", () => {
    const clicks = [
      create(ClickEventSchema, { ...click("d1"), country: "DE", isHead: true, time: timestampFromMs(1_795_000_000_988) }),
      create(ClickEventSchema, { eventId: "d2", code: "k9" }),
    ];
    const fromWire = decodeClickBatch(batch(...clicks));
    expect(fromWire).toEqual([
      { eventId: "d1", code: "k1", ms: 1_795_000_000_988, referrer: "t.co", cls: UserAgentClass.HUMAN, isHead: true, country: "DE" },
      { eventId: "d2", code: "k9", ms: undefined, referrer: "", cls: UserAgentClass.UNSPECIFIED, isHead: false, country: "" },
    ]);
    expect(() => decodeClickBatch(batch(...clicks).slice(0, 20))).toThrow();
  });

  it("decodeClickBatch refuses malformed bytes: field 0, an unknown wire type, a cut varint, a length past the end", () => {
    const one = batch(click("m1"));
    expect(decodeClickBatch(one)).toHaveLength(1);
    expect(() => decodeClickBatch(Uint8Array.from([0x02, 0x00]))).toThrow(/field no 0/); // field 0 in the batch
    expect(() => decodeClickBatch(Uint8Array.from([0x0a, 0x02, 0x00, 0x00]))).toThrow(/field no 0/); // field 0 in a click
    expect(() => decodeClickBatch(Uint8Array.from([0x0a, 0x02, 0x1a, 0x02, 0x07, 0x00]))).toThrow(); // wire type 7 in a Timestamp
    expect(() => decodeClickBatch(Uint8Array.from([0x0a, 0x02, 0x2f, 0x00]))).toThrow(); // wire type 7 in a click
    expect(() => decodeClickBatch(Uint8Array.from([0x0a, 0x02, 0x28, 0x80]))).toThrow(); // varint cut short
    expect(() => decodeClickBatch(Uint8Array.from([0x0a, 0x05, 0x0a, 0x01, 0x61]))).toThrow(); // click longer than the batch
  });

  it("records every click of a batch; single ClickEvent messages are still accepted", async () => {
    const store = new MemoryClickStatsStore();
    const c = startClickConsumer({ bus: engine.bus, store, log });
    await engine.bus.publishDurable(clickBatchSubject("gw-1"), batch(click("b1"), click("b2"), click("b3", "k2", UserAgentClass.BOT)), "batch-1");
    await engine.bus.publishDurable(clickSubject("k1"), event("s1"), "s1");
    await until("4 counted", () => c.stats.counted === 4);
    expect(await store.get("k1", day)).toMatchObject({ total: 3, human: 3, bot: 0 });
    expect(await store.get("k2", day)).toMatchObject({ total: 1, human: 0, bot: 1 });
    await c.close();
  });

  it("counts human clicks per country; a country that is not an ISO code is dropped, the click still counts", async () => {
    const store = new MemoryClickStatsStore();
    const c = startClickConsumer({ bus: engine.bus, store, log });
    const withCountry = (id: string, country: string, cls = UserAgentClass.HUMAN) => create(ClickEventSchema, { ...click(id, "g1", cls), country });
    const clicks = [withCountry("c1", "DE"), withCountry("c2", "DE"), withCountry("c3", "br"), withCountry("c4", "<b>"), withCountry("c5", "FR", UserAgentClass.BOT)];
    await engine.bus.publishDurable(clickBatchSubject("gw-1"), batch(...clicks), "batch-countries");
    await until("5 counted", () => c.stats.counted === 5);
    expect(await store.get("g1", day)).toMatchObject({ total: 5, human: 4, perCountry: [{ country: "DE", human: 2 }, { country: "BR", human: 1 }] });
    await c.close();
  });

  it("a redelivered or republished batch does not double count", async () => {
    const inner = new MemoryClickStatsStore();
    let failOnce = true;
    const flaky = wrapped(inner, {
      // The batch is written, then its answer fails: nak'ed, redelivered, recorded again.
      after: () => {
        if (failOnce) {
          failOnce = false;
          throw unavailable("cassandra");
        }
      },
    });
    const c = startClickConsumer({ bus: engine.bus, store: flaky, log });
    const bytes = batch(click("r1"), click("r2"), click("r3"));
    await engine.bus.publishDurable(clickBatchSubject("gw-1"), bytes, "batch-r");
    await until("redelivered and acked", () => c.stats.failures === 1 && c.stats.batches === 1, 10_000);
    expect(await inner.get("k1", day)).toMatchObject({ total: 3, human: 3 });
    // Republished under another batch id (beyond JetStream's dedupe window): a duplicate.
    await engine.bus.publishDurable(clickBatchSubject("gw-1"), bytes, "batch-r-again");
    await until("republish handled", () => c.stats.batches === 2);
    expect(c.stats.duplicates).toBe(3);
    expect(await inner.get("k1", day)).toMatchObject({ total: 3, human: 3 });
    expect(c.inflight).toBe(0);
    await c.close();
  });

  it("a batch survives a consumer restart (nak'ed batch redelivered to the next consumer, none lost)", async () => {
    const inner = new MemoryClickStatsStore();
    let broken = true;
    const store = wrapped(inner, {
      before: (_b, clicks) => {
        if (broken && clicks.some((x) => x.eventId === "m2")) throw unavailable("cassandra");
      },
    });
    const c1 = startClickConsumer({ bus: engine.bus, store, log });
    await engine.bus.publishDurable(clickBatchSubject("gw-1"), batch(click("m1"), click("m2"), click("m3")), "batch-m");
    await until("first attempt failed", () => c1.stats.failures === 1);
    await c1.close(); // stops before the redelivery: the batch is not acked
    broken = false;
    // Published while no consumer runs.
    await engine.bus.publishDurable(clickBatchSubject("gw-2"), batch(click("m4"), click("m5")), "batch-m2");
    expect((await inner.get("k1", day)).human).toBe(0);
    const c2 = startClickConsumer({ bus: engine.bus, store, log });
    await until("all 5 recorded", async () => (await inner.get("k1", day)).human === 5, 10_000);
    await until("settled", () => c2.inflight === 0 && c2.stats.batches === 2);
    expect((await inner.get("k1", day)).human).toBe(5);
    expect(c2.stats.counted).toBe(5);
    await c2.close();
  });

  it("two consumers on one durable share the stream and count every click once", async () => {
    const store = new MemoryClickStatsStore();
    const c1 = startClickConsumer({ bus: engine.bus, store, log });
    const c2 = startClickConsumer({ bus: engine.bus, store, log });
    for (let i = 0; i < 40; i++) {
      await engine.bus.publishDurable(clickBatchSubject(`gw-${i % 2}`), batch(...Array.from({ length: 5 }, (_, k) => click(`s${i}.${k}`))), `bs-${i}`);
    }
    await until("200 recorded", async () => (await store.get("k1", day)).human === 200);
    await until("settled", () => c1.stats.batches + c2.stats.batches === 40);
    expect(c1.stats.batches).toBeGreaterThan(0);
    expect(c2.stats.batches).toBeGreaterThan(0);
    expect(c1.stats.counted + c2.stats.counted).toBe(200);
    await c1.close();
    await c2.close();
  });

  it("reports its lag to the store and to /metrics", async () => {
    const store = new MemoryClickStatsStore();
    const registry = new Registry();
    await engine.bus.publishDurable(clickBatchSubject("gw-1"), batch(click("l1"), click("l2")), "bl-1");
    await engine.bus.publishDurable(clickBatchSubject("gw-1"), batch(click("l3"), click("l4")), "bl-2");
    // A consumer that cannot record (store down): the lag stays and is visible.
    const down = wrapped(store, {
      before: () => {
        throw unavailable("cassandra");
      },
    });
    const c = startClickConsumer({ bus: engine.bus, store: { ...down, reportProgress: (p) => store.reportProgress(p) }, log, registry, progressMs: 20 });
    await until("lag reported", async () => (await store.get("k1", day)).freshness !== undefined);
    const f = (await store.get("k1", day)).freshness!;
    expect(f.durable).toBe("analytics");
    expect(f.ackFloorSeq).toBe(0);
    expect(f.pendingMessages).toBe(2);
    expect(f.oldestPending).toBeInstanceOf(Date);
    const text = await registry.metrics();
    expect(text).toMatch(/analytics_consumer_pending_messages(\{[^}]*\})? [0-2]/);
    expect(text).toMatch(/analytics_consumer_ack_pending_messages(\{[^}]*\})? [0-2]/);
    expect(text).toContain("analytics_consumer_oldest_pending_age_seconds");
    await c.close();
    // Recorded now: the lag drops to zero and the floor passes both messages.
    const ok = startClickConsumer({ bus: engine.bus, store, log, registry, progressMs: 20 });
    await until("drained", async () => {
      const g = (await store.get("k1", day)).freshness!;
      return g.pendingMessages === 0 && g.ackFloorSeq === 2;
    });
    expect((await store.get("k1", day)).human).toBe(4);
    expect((await store.get("k1", day)).freshness!.oldestPending).toBeUndefined();
    await until("gauges at zero", async () => /analytics_consumer_pending_messages 0/.test(await registry.metrics()));
    await ok.close();
  });

  it("folding reports go one at a time, each waiting FOLD_PACE times what the last one took; the lag is reported every progressMs meanwhile", async () => {
    const store = new MemoryClickStatsStore();
    const folds: { start: number; end: number }[] = [];
    let lagOnly = 0;
    const slow: ClickStatsStore = {
      recordBatch: (b, clicks) => store.recordBatch(b, clicks),
      get: (code, q) => store.get(code, q),
      reportProgress: async (p, o) => {
        if (o?.fold === false) {
          lagOnly++;
          return store.reportProgress(p, o);
        }
        const call = { start: Date.now(), end: 0 };
        folds.push(call);
        await new Promise((r) => setTimeout(r, 60));
        await store.reportProgress(p);
        call.end = Date.now();
      },
    };
    const c = startClickConsumer({ bus: engine.bus, store: slow, log, progressMs: 5 });
    await new Promise((r) => setTimeout(r, 1_200));
    await c.close();
    expect(folds.filter((x) => x.end > 0).length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < folds.length; i++) {
      const prev = folds[i - 1]!;
      // Never two at once, and the pause after each is at least FOLD_PACE x its duration.
      expect(prev.end).toBeGreaterThan(0);
      expect(folds[i]!.start - prev.end).toBeGreaterThanOrEqual(FOLD_PACE * (prev.end - prev.start) - 5);
    }
    // Every 5 ms unpaced (back to back: ~18 in 1.2 s); paced: one per ~60 + 180 ms.
    expect(folds.length).toBeLessThanOrEqual(6);
    expect(lagOnly).toBeGreaterThanOrEqual(20);

    // A quick store folds every progressMs.
    let quick = 0;
    const fast = startClickConsumer({ bus: engine.bus, store: { ...slow, reportProgress: async (p, o) => void (o?.fold !== false && quick++, await store.reportProgress(p, o)) }, log, progressMs: 20 });
    await new Promise((r) => setTimeout(r, 500));
    await fast.close();
    expect(quick).toBeGreaterThanOrEqual(10);
  });

  it("while behind (more messages waiting than in flight) it does not fold; once caught up it does", async () => {
    const store = new MemoryClickStatsStore();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const reports: { fold: boolean; pending: number }[] = [];
    const held: ClickStatsStore = {
      recordBatch: async (b, clicks) => {
        await gate;
        return store.recordBatch(b, clicks);
      },
      get: (code, q) => store.get(code, q),
      reportProgress: async (p, o) => {
        reports.push({ fold: o?.fold !== false, pending: p.pendingMessages });
        await store.reportProgress(p, o);
      },
    };
    for (let i = 0; i < 6; i++) await engine.bus.publishDurable(clickBatchSubject("gw-1"), batch(click(`b${i}`)), `behind-${i}`);
    const c = startClickConsumer({ bus: engine.bus, store: held, log, progressMs: 10, concurrency: 2 });
    await until("behind, reported", () => reports.some((r) => r.pending > 2));
    await new Promise((r) => setTimeout(r, 200));
    const whileBehind = reports.filter((r) => r.pending > 2);
    expect(whileBehind.length).toBeGreaterThanOrEqual(5);
    // The first report may fold (nothing was known yet); none after it while behind.
    expect(whileBehind.slice(1).filter((r) => r.fold)).toEqual([]);
    release();
    await until("caught up and folded", () => reports.some((r) => r.fold && r.pending === 0));
    await c.close();
  });
});
