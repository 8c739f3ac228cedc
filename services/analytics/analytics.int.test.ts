// Click analytics on real Cassandra counters and NATS JetStream.
import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClickBatchSchema, ClickEventSchema, UserAgentClass } from "../../gen/switchboard/events/v1/events_pb.js";
import { DriverCqlSession } from "../../platform/cassandra/session.js";
import { NatsBus } from "../../platform/engines/cluster/nats-bus.js";
import { silentLog } from "../../platform/engines/log.js";
import { infra, useKeyspace } from "../../testkit/keyspace.js";
import { CLICKS_ALL, CLICKS_STREAM, clickBatchSubject, clickSubject } from "../redirect/subjects.js";
import { CassandraClickStatsStore, deltaShard } from "./adapters/cassandra-click-stats.js";
import { clickStatsConformance } from "./click-stats.conformance.js";
import { startClickConsumer } from "./consumer.js";

const ks = useKeyspace("analytics");
// The store tests use made-up stream seqs (and move the shards' watermarks to them): a keyspace
// of their own, so the consumer tests' real seqs below are not under those watermarks.
const ksStore = useKeyspace("analytics_store");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("CassandraClickStatsStore conformance", () => {
  clickStatsConformance(async () => new CassandraClickStatsStore(new DriverCqlSession(ksStore.client, ksStore.keyspace)));
});

describe("CassandraClickStatsStore roll-up", () => {
  it("two processes folding the same shard at once add its deltas once, and leave no deltas behind", async () => {
    const a = new CassandraClickStatsStore(new DriverCqlSession(ksStore.client, ksStore.keyspace));
    const b = new CassandraClickStatsStore(new DriverCqlSession(ksStore.client, ksStore.keyspace));
    const code = `fold${randomUUID().slice(0, 8)}`;
    const base = 5_000_000 + Math.floor(Math.random() * 1_000_000);
    for (let i = 0; i < 30; i++) {
      const clicks = [{ eventId: randomUUID(), code, time: new Date(), referrer: `r${i % 3}.example`, human: i % 5 !== 0, country: i % 2 === 0 ? "DE" : "" }];
      // Half the batches written by each process.
      await (i % 2 === 0 ? a : b).recordBatch({ id: randomUUID(), seq: base + i }, clicks);
      // A fold half-way by one of them (the other one's later fold starts from its watermark).
      if (i === 14) await a.reportProgress({ durable: "fold-race", ackFloorSeq: base + 14, pendingMessages: 15, pendingClicks: 15, oldestPending: new Date(), at: new Date() });
    }
    const progress = { durable: "fold-race", ackFloorSeq: base + 29, pendingMessages: 0, pendingClicks: 0, oldestPending: undefined, at: new Date() };
    await Promise.all([a.reportProgress(progress), b.reportProgress(progress)]);
    const st = await a.get(code);
    expect(st).toMatchObject({ total: 30, human: 24, bot: 6 });
    expect(st.perReferrer.reduce((n, r) => n + r.human, 0)).toBe(24);
    // Human clicks with a country: even i not divisible by 5 (i = 2, 4, 6, 8, 12, ..., 28).
    expect(st.perCountry).toEqual([{ country: "DE", human: 12 }]);
    expect(st.asOf).toBeInstanceOf(Date);
    const left = await ksStore.client.execute(`SELECT seq FROM ${ksStore.keyspace}.click_deltas WHERE shard = ? AND seq >= ? AND seq <= ?`, [deltaShard(code), base, base + 29], {
      prepare: true,
    });
    expect(left.rows.length).toBe(0);
    // A fold redone from scratch (another process, no watermark cached) changes nothing.
    const c = new CassandraClickStatsStore(new DriverCqlSession(ksStore.client, ksStore.keyspace));
    await c.reportProgress(progress);
    expect(await c.get(code)).toMatchObject({ total: 30, human: 24, bot: 6 });
  }, 60_000);

  it("folds delta rows written before countries were counted (five-element deltas)", async () => {
    const store = new CassandraClickStatsStore(new DriverCqlSession(ksStore.client, ksStore.keyspace));
    await store.ensureSchema();
    const code = `old${randomUUID().slice(0, 8)}`;
    const seq = 7_000_000 + Math.floor(Math.random() * 1_000_000);
    const day = new Date().toISOString().slice(0, 10);
    // What an older consumer wrote for two human clicks and a bot one.
    await ksStore.client.execute(
      `INSERT INTO ${ksStore.keyspace}.click_deltas (shard, seq, batch_id, d) VALUES (?, ?, ?, ?)`,
      [deltaShard(code), seq, `old-${randomUUID()}`, JSON.stringify({ [code]: [2, 1, { [day]: 2 }, { [day]: 1 }, { "t.co": 2 }] })],
      { prepare: true },
    );
    await store.reportProgress({ durable: "old-rows", ackFloorSeq: seq, pendingMessages: 0, pendingClicks: 0, oldestPending: undefined, at: new Date() });
    expect(await store.get(code)).toMatchObject({ total: 3, human: 2, bot: 1, perReferrer: [{ referrer: "t.co", human: 2 }], perCountry: [] });
  }, 60_000);
});

describe("click consumer on NATS JetStream + Cassandra", () => {
  let bus: NatsBus;
  beforeAll(async () => {
    bus = new NatsBus({ servers: [infra().nats.url], log: silentLog });
    for (let i = 0; i < 100 && !bus.status().ok; i++) await sleep(50);
  });
  afterAll(async () => {
    await bus.close();
  });

  it("counts each click once across redelivery and republish", async () => {
    const store = new CassandraClickStatsStore(new DriverCqlSession(ks.client, ks.keyspace));
    const durable = `analytics_${randomUUID().slice(0, 8)}`;
    await bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL]);
    const code = `n${randomUUID().slice(0, 8)}`;
    const ev = (id: string, cls: UserAgentClass, isHead = false) =>
      toBinary(
        ClickEventSchema,
        create(ClickEventSchema, { eventId: id, code, time: timestampFromMs(Date.now()), referrer: "t.co", userAgentClass: cls, isHead }),
      );
    const ids = Array.from({ length: 50 }, () => randomUUID());
    for (const id of ids) await bus.publishDurable(clickSubject(code), ev(id, UserAgentClass.HUMAN), id);
    // Republished under other msgIds (beyond JetStream's dedupe): the store's event-id dedupe holds.
    for (const id of ids.slice(0, 10)) await bus.publishDurable(clickSubject(code), ev(id, UserAgentClass.HUMAN), `${id}-again`);
    await bus.publishDurable(clickSubject(code), ev("bot-1", UserAgentClass.PREVIEW), `bot-1-${code}`);
    await bus.publishDurable(clickSubject(code), ev("head-1", UserAgentClass.HUMAN, true), `head-1-${code}`);
    const consumer = startClickConsumer({ bus, store, log: pino({ level: "silent" }), durableName: durable });
    const deadline = Date.now() + 30_000;
    // The stream may hold other files' clicks too (other codes): wait for ours, then for quiet.
    while ((await store.get(code)).total < 52 && Date.now() < deadline) await sleep(100);
    await sleep(500);
    await consumer.close();
    expect(consumer.stats.duplicates).toBeGreaterThanOrEqual(10);
    const st = await store.get(code);
    expect(st).toMatchObject({ total: 52, human: 50, bot: 2 });
    expect(st.perReferrer).toEqual([{ referrer: "t.co", human: 50 }]);
  }, 60_000);

  it("ClickBatch: each click counted once across a republished batch and a consumer restart", async () => {
    const store = new CassandraClickStatsStore(new DriverCqlSession(ks.client, ks.keyspace));
    const durable = `analytics_${randomUUID().slice(0, 8)}`;
    await bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL]);
    const code = `nb${randomUUID().slice(0, 8)}`;
    const batch = (ids: readonly string[]) =>
      toBinary(
        ClickBatchSchema,
        create(ClickBatchSchema, {
          clicks: ids.map((id) =>
            create(ClickEventSchema, { eventId: id, code, time: timestampFromMs(Date.now()), referrer: "t.co", userAgentClass: UserAgentClass.HUMAN }),
          ),
        }),
      );
    const log = pino({ level: "silent" });
    const first = Array.from({ length: 40 }, () => randomUUID());
    const second = Array.from({ length: 25 }, () => randomUUID());
    const subject = clickBatchSubject("it-gateway.local");
    const b1 = batch(first);
    await bus.publishDurable(subject, b1, `b1-${code}`);
    expect((await bus.publishDurable(subject, b1, `b1-${code}`)).duplicate).toBe(true); // JetStream dedupe by batch id
    const c1 = startClickConsumer({ bus, store, log, durableName: durable });
    const deadline = Date.now() + 30_000;
    while ((await store.get(code)).total < 40 && Date.now() < deadline) await sleep(100);
    await c1.close();
    // While no consumer runs: the same batch under another id (beyond the dedupe window) and a new one.
    await bus.publishDurable(subject, b1, `b1-again-${code}`);
    await bus.publishDurable(subject, batch(second), `b2-${code}`);
    const c2 = startClickConsumer({ bus, store, log, durableName: durable });
    while ((await store.get(code)).total < 65 && Date.now() < deadline) await sleep(100);
    await sleep(500);
    // The consumer's lag report (JetStream consumer info, once a second) reaches GetLinkStats' store.
    const reported = async () => {
      const f = (await store.get(code)).freshness;
      return f?.durable === durable && f.pendingMessages === 0 && f.ackFloorSeq > 0 ? f : undefined;
    };
    while (!(await reported()) && Date.now() < deadline) await sleep(200);
    expect(await reported()).toMatchObject({ durable, pendingMessages: 0, pendingClicks: 0, oldestPending: undefined });
    await c2.close();
    expect(c2.stats.duplicates).toBeGreaterThanOrEqual(40);
    expect(await store.get(code)).toMatchObject({ total: 65, human: 65, bot: 0 });
  }, 60_000);
});
