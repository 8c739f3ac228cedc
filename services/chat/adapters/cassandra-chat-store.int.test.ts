import { create } from "@bufbuild/protobuf";
import cassandra from "cassandra-driver";
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { readRecorded, runMigrations } from "../../../platform/cassandra/migrations.js";
import { DriverCqlSession, type CqlOptions, type CqlRow, type CqlSession } from "../../../platform/cassandra/session.js";
import { isDomainError } from "../../../platform/errors.js";
import { ChatEventSchema, MessageSchema } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { RedisCache } from "../../../platform/engines/cluster/redis-cache.js";
import { infra, useKeyspace } from "../../../testkit/keyspace.js";
import { chatStoreConformance, idAt } from "../chat-store.conformance.js";
import { chatMigrations } from "../migrations.js";
import type { MessageRecord } from "../ports.js";
import { bucketOf, CassandraChatStore } from "./cassandra-chat-store.js";

const ks = useKeyspace("chat_store");
const session = (): DriverCqlSession => new DriverCqlSession(ks.client, ks.keyspace);

/** Counts the statements a store sends (reads and writes), to check the bucket index is used. */
class CountingSession implements CqlSession {
  reads = 0;
  constructor(private readonly inner: CqlSession) {}
  get keyspace(): string {
    return this.inner.keyspace;
  }
  execute(cql: string, params?: readonly unknown[], options?: CqlOptions): Promise<readonly CqlRow[]> {
    if (/^\s*SELECT/i.test(cql)) this.reads++;
    return this.inner.execute(cql, params, options);
  }
  executePage(...a: Parameters<CqlSession["executePage"]>): ReturnType<CqlSession["executePage"]> {
    this.reads++;
    return this.inner.executePage(...a);
  }
  executeLwt(...a: Parameters<CqlSession["executeLwt"]>): ReturnType<CqlSession["executeLwt"]> {
    return this.inner.executeLwt(...a);
  }
  executeBatch(...a: Parameters<CqlSession["executeBatch"]>): ReturnType<CqlSession["executeBatch"]> {
    return this.inner.executeBatch(...a);
  }
}

const T = Date.UTC(2029, 5, 1);
const AFTER_ALL_IDS = Date.UTC(2040, 0, 1);
const msg = (channelId: string, id: bigint, over: Partial<MessageRecord> = {}): MessageRecord => ({
  id,
  channelId,
  senderId: "alice",
  clientMessageId: `c-${id}`,
  text: `text ${id}`,
  createdAt: new Date(T),
  deleted: false,
  ...over,
});

describe("CassandraChatStore against the run's real Cassandra", () => {
  it("talks to a real Cassandra", async () => {
    const rs = await ks.client.execute("SELECT release_version FROM system.local");
    expect(String(rs.first()?.["release_version"])).toBe(infra().cassandra.version);
  });

  chatStoreConformance(async () => {
    const cache = new RedisCache({ url: infra().redis.url });
    // The suite's ids are years apart around 2029: with the clock past all of them every bucket
    // has settled, so the index is read once per channel and this store's own writes keep it current.
    return { store: new CassandraChatStore(session(), { writeTimeoutMs: 2000, now: () => AFTER_ALL_IDS }), cache, cleanup: () => cache.close() };
  });

  it("migrated the chat scope (version 1) in this keyspace; re-running is a no-op", async () => {
    const recorded = await readRecorded(session(), "chat");
    expect([...recorded.keys()]).toEqual([1]);
    expect(recorded.get(1)?.name).toBe("create_chat");
    const r = await runMigrations(session(), chatMigrations);
    expect(r.applied).toEqual([]);
    expect(r.alreadyApplied).toEqual([1]);
  });

  it("a deleted message's text is gone from storage (message row and client id claim), read back raw", async () => {
    const store = new CassandraChatStore(session());
    const ch = `raw_${randomUUID().slice(0, 8)}`;
    const m = msg(ch, idAt(T, 1), { text: "the secret words", clientMessageId: "k-raw" });
    expect((await store.claimClientMessageId(m)).claimed).toBe(true);
    await store.putMessage(m);
    const cid = idAt(T, 2);
    await store.appendChange({
      id: cid,
      channelId: ch,
      kind: "message",
      createdAt: new Date(T),
      event: create(ChatEventSchema, { eventId: cid, event: { case: "message", value: create(MessageSchema, { messageId: m.id, channelId: ch, text: m.text }) } }),
    });
    expect(await store.deleteMessage(ch, m.id, "alice", new Date(T + 1000))).toBe(true);
    const rows = await ks.client.execute("SELECT text, deleted, deleted_by FROM chat_messages WHERE channel_id = ? AND bucket = ?", [ch, bucketOf(m.id)], { prepare: true });
    expect(rows.rows).toHaveLength(1);
    expect(rows.rows[0]!["text"]).toBe("");
    expect(rows.rows[0]!["deleted"]).toBe(true);
    expect(rows.rows[0]!["deleted_by"]).toBe("alice");
    const claim = await ks.client.execute(
      "SELECT id, text FROM chat_client_ids WHERE channel_id = ? AND sender_id = ? AND client_message_id = ?",
      [ch, "alice", "k-raw"],
      { prepare: true },
    );
    expect(String(claim.rows[0]!["id"])).toBe(String(m.id));
    expect(claim.rows[0]!["text"]).toBeNull();
    // No table of the chat scope holds the text any more.
    for (const table of ["chat_messages", "chat_client_ids", "chat_changes"]) {
      const all = await ks.client.execute(`SELECT * FROM ${table}`);
      expect(all.rows.length).toBeGreaterThan(0);
      expect(JSON.stringify(all.rows.map((r) => Object.values(r).map((v) => (Buffer.isBuffer(v) ? v.toString("latin1") : String(v)))))).not.toContain("the secret words");
    }
  });

  it("createChannel heals a creation that died after its LWT (channel row without members)", async () => {
    const store = new CassandraChatStore(session());
    const id = `heal_${randomUUID().slice(0, 8)}`;
    const createdAt = new Date(T);
    // As left by a process that won the channel row and died before the member rows.
    await ks.client.execute(
      "INSERT INTO chat_channels (channel_id, type, name, created_at, created_by, version) VALUES (?, 'group', 'Team', ?, 'alice', 1)",
      [id, createdAt],
      { prepare: true },
    );
    const ev = idAt(T, 7);
    const members = [
      { userId: "alice", role: "owner" as const, joinedAt: createdAt, joinedId: ev },
      { userId: "bob", role: "member" as const, joinedAt: createdAt, joinedId: ev },
    ];
    const event = { id: ev, channelId: id, kind: "member" as const, createdAt, event: create(ChatEventSchema, { eventId: ev }) };
    expect(await store.getMember(id, "bob")).toBeUndefined();
    const rec = { id, type: "group" as const, name: "Team", createdAt, createdBy: "alice", version: 1 };
    expect(await store.createChannel(rec, members, event)).toBe(false);
    expect((await store.getChannel(id))?.members.map((m) => m.userId)).toEqual(["alice", "bob"]);
    expect((await store.userChannels("bob")).some((u) => u.channelId === id)).toBe(true);
    expect((await store.getChannel(id))?.lastEventId).toBe(ev);
    // Another creator's attempt on the same id does not write its members.
    expect(await store.createChannel({ ...rec, createdBy: "mallory" }, [{ ...members[0]!, userId: "mallory" }], event)).toBe(false);
    expect(await store.getMember(id, "mallory")).toBeUndefined();
  });

  it("history, eventsAfter and countUnread read the bucket index once per channel, then only the buckets they need", async () => {
    const counting = new CountingSession(session());
    const now = T;
    const store = new CassandraChatStore(counting, { now: () => now });
    const ch = `far_${randomUUID().slice(0, 8)}`;
    // Two messages in buckets that settled long ago (3 years and 200 days back), two now.
    const ids = [idAt(T - 3 * 365 * 86_400_000, 1), idAt(T - 200 * 86_400_000, 1), idAt(T, 1), idAt(T + 1, 1)];
    for (const id of ids) await store.putMessage(msg(ch, id));
    await store.getMessage(ch, ids[0]!); // schema settled
    counting.reads = 0;
    const page = await store.history(ch, { newest: true }, 10);
    expect(page.messages.map((m) => m.id)).toEqual(ids);
    expect(page.hasMore).toBe(false);
    // The index, the newest open bucket, then the rest of the candidates in one IN statement.
    const first = counting.reads;
    expect(first).toBeLessThanOrEqual(4);
    counting.reads = 0;
    expect((await store.history(ch, { newest: true }, 10)).messages.map((m) => m.id)).toEqual(ids);
    expect(counting.reads).toBe(first - 1);
    // A page that the newest bucket fills is one statement.
    counting.reads = 0;
    expect((await store.history(ch, { newest: true }, 1)).messages.map((m) => m.id)).toEqual([ids[3]]);
    expect(counting.reads).toBe(1);
    counting.reads = 0;
    expect((await store.eventsAfter(ch, 0n, 10)).map((e) => e.id)).toEqual(ids);
    expect(await store.countUnread(ch, "bob", 0n, 10)).toBe(4);
    const openBuckets = counting.reads;
    // What another server writes into an open bucket is seen at once, without an index read.
    const other = new CassandraChatStore(session(), { now: () => now });
    const later = idAt(T + 1000, 1);
    await other.putMessage(msg(ch, later));
    counting.reads = 0;
    expect((await store.history(ch, { afterId: ids[1]! }, 10)).messages.map((m) => m.id)).toEqual([ids[2], ids[3], later]);
    expect((await store.eventsAfter(ch, 0n, 10)).map((e) => e.id)).toEqual([...ids, later]);
    expect(await store.countUnread(ch, "bob", 0n, 10)).toBe(5);
    expect(counting.reads).toBeGreaterThan(0);
    expect(counting.reads).toBeLessThanOrEqual(openBuckets + 2);
  });

  it("a page of a channel whose 60 messages sit in 60 buckets takes a few statements, not one per bucket", async () => {
    const counting = new CountingSession(session());
    const store = new CassandraChatStore(counting, { now: () => T });
    const ch = `sparse_${randomUUID().slice(0, 8)}`;
    const ids = Array.from({ length: 60 }, (_, i) => idAt(T - (60 - i) * 11 * 86_400_000, 1));
    await Promise.all(ids.map((id) => store.putMessage(msg(ch, id))));
    await store.history(ch, { newest: true }, 1); // index cached
    counting.reads = 0;
    const page = await store.history(ch, { newest: true }, 50);
    expect(page.messages.map((m) => m.id)).toEqual(ids.slice(10));
    expect(page.hasMore).toBe(true);
    expect(counting.reads).toBeLessThanOrEqual(4);
    counting.reads = 0;
    const before = await store.history(ch, { beforeId: ids[30]! }, 50);
    expect(before.messages.map((m) => m.id)).toEqual(ids.slice(0, 30));
    expect(before.hasMore).toBe(false);
    expect(counting.reads).toBeLessThanOrEqual(4);
    const after = await store.history(ch, { afterId: ids[5]! }, 20);
    expect(after.messages.map((m) => m.id)).toEqual(ids.slice(6, 26));
    expect(after.hasMore).toBe(true);
  });

  it("every write carries the write timeout (driver readTimeout), so chat writes fail fast", async () => {
    const seen: { cql: string; timeoutMs: number | undefined }[] = [];
    const inner = session();
    const recording: CqlSession = {
      keyspace: inner.keyspace,
      execute: (cql, params, options) => {
        if (!/^\s*SELECT/i.test(cql)) seen.push({ cql, timeoutMs: options?.timeoutMs });
        return inner.execute(cql, params, options);
      },
      executePage: (cql, params, page, options) => inner.executePage(cql, params, page, options),
      executeLwt: (cql, params, options) => {
        seen.push({ cql, timeoutMs: options?.timeoutMs });
        return inner.executeLwt(cql, params, options);
      },
      executeBatch: (statements, options) => {
        seen.push({ cql: statements[0]!.cql, timeoutMs: options?.timeoutMs });
        return inner.executeBatch(statements, options);
      },
    };
    const store = new CassandraChatStore(recording, { writeTimeoutMs: 1500 });
    await store.ensureSchema();
    seen.length = 0;
    const ch = `to_${randomUUID().slice(0, 8)}`;
    const m = msg(ch, idAt(T, 3));
    await store.claimClientMessageId(m);
    await store.putMessage(m);
    await store.appendChange({ id: idAt(T, 4), channelId: ch, kind: "receipt", createdAt: new Date(T), event: create(ChatEventSchema, { eventId: idAt(T, 4) }) });
    await store.deleteMessage(ch, m.id, "alice", new Date(T));
    await store.advanceReadMarker("alice", ch, m.id);
    await store.advanceDeliveredMarker("alice", "phone", ch, m.id);
    await store.claimDirect(`p-${ch}`, ch);
    expect(seen.length).toBeGreaterThanOrEqual(8);
    expect(seen.filter((w) => w.timeoutMs !== 1500)).toEqual([]);
  });

  it("messages get a TTL of retentionDays when set, none by default", async () => {
    const ch = `ttl_${randomUUID().slice(0, 8)}`;
    await new CassandraChatStore(session(), { retentionDays: 2 }).putMessage(msg(ch, idAt(T, 1)));
    await new CassandraChatStore(session()).putMessage(msg(ch, idAt(T, 2)));
    const rows = await ks.client.execute("SELECT id, TTL(text) AS t FROM chat_messages WHERE channel_id = ? AND bucket = ?", [ch, bucketOf(idAt(T, 1))], {
      prepare: true,
    });
    const ttl = rows.rows.map((r) => r["t"]);
    expect(ttl[0]).toBeGreaterThan(2 * 86_400 - 60);
    expect(ttl[0]).toBeLessThanOrEqual(2 * 86_400);
    expect(ttl[1]).toBeNull();
  });

  it("an unreachable Cassandra surfaces as DomainError Unavailable", async () => {
    const c = infra().cassandra;
    const client = new cassandra.Client({ contactPoints: ["127.0.0.1"], localDataCenter: c.localDataCenter, protocolOptions: { port: 1 }, keyspace: ks.keyspace });
    const store = new CassandraChatStore(new DriverCqlSession(client, ks.keyspace));
    const err = await store.getMember("x", "y").catch((e: unknown) => e);
    expect(isDomainError(err) && err.kind).toBe("Unavailable");
    await client.shutdown().catch(() => undefined);
  });
});
