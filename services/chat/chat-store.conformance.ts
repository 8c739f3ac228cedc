import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChatEventSchema,
  MemberChangeKind,
  MemberChangeSchema,
  MessageDeletedSchema,
  MessageSchema,
  ReceiptKind,
  ReceiptSchema,
} from "../../gen/switchboard/chat/v1/chat_pb.js";
import { isDomainError } from "../../platform/errors.js";
import type { Cache } from "../../platform/ports/cache.js";
import { SNOWFLAKE_EPOCH_MS } from "../tokenrange/snowflake.js";
import { LOCK_SAFE_MS, LockedClaims } from "./adapters/locked-claims.js";
import type { ChangeKind, ChangeRecord, ChannelRecord, ChatStore, MemberRecord, MessageRecord, Role } from "./ports.js";

export interface ChatStoreFixture {
  readonly store: ChatStore;
  /** The engine's shared cache (send locks, services/chat/adapters/locked-claims.ts). */
  readonly cache: Cache;
  cleanup(): Promise<void>;
}

/** A snowflake id at Unix time `ms` (worker 0), `seq` < 4096 keeps ids of one ms apart. */
export function idAt(ms: number, seq = 0): bigint {
  return (BigInt(ms - SNOWFLAKE_EPOCH_MS) << 22n) | BigInt(seq);
}

const T0 = Date.UTC(2029, 2, 1, 12, 0, 0);
const DAY = 24 * 3600 * 1000;
const YEAR = 365 * DAY;

/** Declares the ChatStore contract tests; run by every adapter's test file. */
export function chatStoreConformance(makeStore: () => Promise<ChatStoreFixture>): void {
  describe("ChatStore conformance", () => {
    let f: ChatStoreFixture;
    beforeAll(async () => {
      f = await makeStore();
    });
    afterAll(async () => {
      await f.cleanup();
    });
    const s = (): ChatStore => f.store;
    const chId = () => `ch_${randomUUID().replace(/-/g, "").slice(0, 16)}`;
    let seq = 0;
    /** Fresh, increasing ids around T0 (unique within this run). */
    const nextId = (at = T0) => idAt(at, ++seq % 4096);

    const record = (id: string, over: Partial<ChannelRecord> = {}): ChannelRecord => ({
      id,
      type: "group",
      name: "Team",
      createdAt: new Date(T0),
      createdBy: "alice",
      version: 1,
      ...over,
    });
    const member = (userId: string, joinedId: bigint, role: Role = "member"): MemberRecord => ({
      userId,
      role,
      joinedAt: new Date(T0),
      joinedId,
    });
    const memberEvent = (channelId: string, id: bigint, kind: MemberChangeKind, userIds: string[]): ChangeRecord => ({
      id,
      channelId,
      kind: "member",
      createdAt: new Date(T0),
      event: create(ChatEventSchema, {
        eventId: id,
        time: timestampFromMs(T0),
        event: { case: "memberChange", value: create(MemberChangeSchema, { channelId, kind, userIds, actorId: "alice" }) },
      }),
    });
    const change = (channelId: string, id: bigint, kind: ChangeKind = "receipt"): ChangeRecord => ({
      id,
      channelId,
      kind,
      createdAt: new Date(T0),
      event: create(ChatEventSchema, {
        eventId: id,
        time: timestampFromMs(T0),
        event: {
          case: "receipt",
          value: create(ReceiptSchema, { channelId, userId: "bob", kind: ReceiptKind.READ, upToId: 1n }),
        },
      }),
    });
    const message = (channelId: string, id: bigint, over: Partial<MessageRecord> = {}): MessageRecord => ({
      id,
      channelId,
      senderId: "alice",
      clientMessageId: `c-${id}`,
      text: `hello ${id}`,
      createdAt: new Date(Number((id >> 22n) + BigInt(SNOWFLAKE_EPOCH_MS))),
      deleted: false,
      ...over,
    });
    /** A group with alice (owner) and bob, created by a CREATED change. */
    const group = async (members = ["alice", "bob"]) => {
      const id = chId();
      const created = nextId();
      const ms = members.map((u, i) => member(u, created, i === 0 ? "owner" : "member"));
      expect(await s().createChannel(record(id), ms, memberEvent(id, created, MemberChangeKind.CREATED, members))).toBe(true);
      return { id, created };
    };

    describe("channels and members", () => {
      it("getChannel/getMember of unknown ids are undefined", async () => {
        expect(await s().getChannel(chId())).toBeUndefined();
        const { id } = await group();
        expect(await s().getMember(id, "carol")).toBeUndefined();
        expect(await s().getMember(chId(), "alice")).toBeUndefined();
      });

      it("getMembers is the current members in join order, the same as getChannel's; [] for an unknown channel", async () => {
        expect(await s().getMembers(chId())).toEqual([]);
        const { id } = await group(["alice", "bob", "carol"]);
        const ev = nextId();
        expect(
          await s().changeMembership({
            channelId: id,
            expectedVersion: 1,
            add: [member("dave", ev)],
            remove: ["bob"],
            roles: [{ userId: "carol", role: "admin" }],
            event: memberEvent(id, ev, MemberChangeKind.ADDED, ["dave"]),
          }),
        ).toBe("ok");
        const members = await s().getMembers(id);
        expect(members).toEqual((await s().getChannel(id))!.members);
        expect(members.map((m) => [m.userId, m.role])).toEqual([
          ["alice", "owner"],
          ["carol", "admin"],
          ["dave", "member"],
        ]);
      });

      it("createChannel stores the channel (version 1), members in join order, UserChannels and the CREATED change", async () => {
        const id = chId();
        const created = nextId();
        const ms = [member("alice", created, "owner"), member("bob", created), member("carol", created)];
        expect(await s().createChannel(record(id, { version: 7 }), ms, memberEvent(id, created, MemberChangeKind.CREATED, ["alice", "bob", "carol"]))).toBe(true);
        const ch = await s().getChannel(id);
        expect(ch).toMatchObject({ id, type: "group", name: "Team", createdBy: "alice", version: 1, lastMessageId: 0n, lastEventId: created });
        expect(ch!.createdAt.getTime()).toBe(T0);
        expect(ch!.members.map((m) => m.userId).sort()).toEqual(["alice", "bob", "carol"]);
        expect(await s().getMember(id, "alice")).toEqual(member("alice", created, "owner"));
        expect((await s().userChannels("bob")).find((u) => u.channelId === id)).toEqual({ channelId: id, joinedId: created });
        const evs = await s().eventsAfter(id, 0n, 10);
        expect(evs.map((e) => [e.kind, e.id])).toEqual([["change", created]]);
        const c = evs[0]!.kind === "change" ? evs[0]!.change : undefined;
        expect(c?.kind).toBe("member");
        expect(c?.event.event.case).toBe("memberChange");
        expect(c?.event.eventId).toBe(created);
      });

      it("createChannel twice with the same id is a no-op returning false (nothing overwritten)", async () => {
        const { id, created } = await group();
        const again = nextId();
        expect(await s().createChannel(record(id, { name: "Other" }), [member("mallory", again, "owner")], memberEvent(id, again, MemberChangeKind.CREATED, ["mallory"]))).toBe(false);
        const ch = await s().getChannel(id);
        expect(ch?.name).toBe("Team");
        expect(ch?.members.map((m) => m.userId).sort()).toEqual(["alice", "bob"]);
        expect(await s().getMember(id, "mallory")).toBeUndefined();
        expect(ch?.lastEventId).toBe(created);
      });

      it("a retried createChannel (same content) after a membership change returns false and undoes nothing", async () => {
        const id = chId();
        const created = nextId();
        const ms = [member("alice", created, "owner"), member("bob", created)];
        const ev = memberEvent(id, created, MemberChangeKind.CREATED, ["alice", "bob"]);
        expect(await s().createChannel(record(id), ms, ev)).toBe(true);
        const left = nextId();
        expect(await s().changeMembership({ channelId: id, expectedVersion: 1, remove: ["bob"], event: memberEvent(id, left, MemberChangeKind.LEFT, ["bob"]) })).toBe("ok");
        expect(await s().createChannel(record(id), ms, ev)).toBe(false);
        expect(await s().getMember(id, "bob")).toBeUndefined();
        expect((await s().userChannels("bob")).find((u) => u.channelId === id)?.leftId).toBe(left);
        const ch = await s().getChannel(id);
        expect(ch?.version).toBe(2);
        expect(ch?.members.map((m) => m.userId)).toEqual(["alice"]);
        expect((await s().eventsAfter(id, 0n, 10)).map((e) => e.id)).toEqual([created, left]);
      });

      it("members are listed in join order (joinedId ascending)", async () => {
        const { id, created } = await group(["zed", "amy"]);
        const addId = nextId();
        expect(await s().changeMembership({ channelId: id, expectedVersion: 1, add: [member("bea", addId)], event: memberEvent(id, addId, MemberChangeKind.ADDED, ["bea"]) })).toBe("ok");
        const ch = await s().getChannel(id);
        expect(ch!.members.map((m) => m.joinedId)).toEqual([created, created, addId]);
        expect(ch!.members[2]!.userId).toBe("bea");
      });

      it("claimDirect: 20 concurrent claims of one pair all see the same winner", async () => {
        const pair = `pair-${randomUUID()}`;
        const candidates = Array.from({ length: 20 }, (_, i) => `dm_${i}_${randomUUID().slice(0, 8)}`);
        const got = await Promise.all(candidates.map((c) => s().claimDirect(pair, c)));
        expect(new Set(got).size).toBe(1);
        expect(candidates).toContain(got[0]);
        expect(await s().claimDirect(pair, "dm_late")).toBe(got[0]);
      });

      it("claimGroupRequest: 20 concurrent claims all see the same record; another key is independent", async () => {
        const req = randomUUID();
        const recs = Array.from({ length: 20 }, (_, i) => ({ channelId: `g_${i}_${randomUUID().slice(0, 8)}`, requestHash: `h${i}` }));
        const got = await Promise.all(recs.map((r) => s().claimGroupRequest("alice", req, r)));
        expect(new Set(got.map((g) => `${g.channelId}/${g.requestHash}`)).size).toBe(1);
        expect(recs).toContainEqual(got[0]);
        expect(await s().claimGroupRequest("alice", req, { channelId: "g_late", requestHash: "x" })).toEqual(got[0]);
        expect(await s().claimGroupRequest("bob", req, { channelId: "g_bob", requestHash: "y" })).toEqual({ channelId: "g_bob", requestHash: "y" });
      });

      it("changeMembership applies adds, removes and roles, stores the event, bumps version and lastEventId", async () => {
        const { id } = await group(["alice", "bob", "carol"]);
        const ev = nextId();
        const r = await s().changeMembership({
          channelId: id,
          expectedVersion: 1,
          add: [member("dave", ev)],
          remove: ["carol"],
          roles: [{ userId: "bob", role: "admin" }],
          event: memberEvent(id, ev, MemberChangeKind.ADDED, ["dave"]),
        });
        expect(r).toBe("ok");
        const ch = await s().getChannel(id);
        expect(ch?.version).toBe(2);
        expect(ch?.lastEventId).toBe(ev);
        expect(ch?.members.map((m) => m.userId).sort()).toEqual(["alice", "bob", "dave"]);
        expect((await s().getMember(id, "bob"))?.role).toBe("admin");
        expect(await s().getMember(id, "carol")).toBeUndefined();
        expect(await s().getMember(id, "dave")).toEqual(member("dave", ev));
        expect((await s().userChannels("carol")).find((u) => u.channelId === id)?.leftId).toBe(ev);
        expect((await s().userChannels("dave")).find((u) => u.channelId === id)).toEqual({ channelId: id, joinedId: ev });
        const evs = await s().eventsAfter(id, 0n, 10);
        expect(evs.map((e) => e.id)).toContain(ev);
      });

      it("changeMembership with a stale version is a conflict and changes nothing", async () => {
        const { id, created } = await group();
        const ev = nextId();
        expect(await s().changeMembership({ channelId: id, expectedVersion: 2, remove: ["bob"], event: memberEvent(id, ev, MemberChangeKind.REMOVED, ["bob"]) })).toBe("conflict");
        const ch = await s().getChannel(id);
        expect(ch?.version).toBe(1);
        expect(ch?.lastEventId).toBe(created);
        expect(await s().getMember(id, "bob")).toBeDefined();
        expect((await s().eventsAfter(id, 0n, 10)).map((e) => e.id)).toEqual([created]);
      });

      it("changeMembership: of 10 concurrent changes from one version exactly one is ok, the others conflict", async () => {
        const { id } = await group();
        const evs = Array.from({ length: 10 }, () => nextId());
        const results = await Promise.all(
          evs.map((ev, i) =>
            s().changeMembership({ channelId: id, expectedVersion: 1, add: [member(`u${i}`, ev)], event: memberEvent(id, ev, MemberChangeKind.ADDED, [`u${i}`]) }),
          ),
        );
        expect(results.filter((r) => r === "ok")).toHaveLength(1);
        expect(results.filter((r) => r === "conflict")).toHaveLength(9);
        const winner = results.indexOf("ok");
        const ch = await s().getChannel(id);
        expect(ch?.version).toBe(2);
        expect(ch?.members.map((m) => m.userId).sort()).toEqual(["alice", "bob", `u${winner}`].sort());
      });

      it("userChannels: leave sets leftId; re-adding gives a new joinedId and no leftId", async () => {
        const { id, created } = await group();
        expect(await s().userChannels(`nobody-${randomUUID()}`)).toEqual([]);
        const left = nextId();
        expect(await s().changeMembership({ channelId: id, expectedVersion: 1, remove: ["bob"], event: memberEvent(id, left, MemberChangeKind.LEFT, ["bob"]) })).toBe("ok");
        expect((await s().userChannels("bob")).find((u) => u.channelId === id)).toEqual({ channelId: id, joinedId: created, leftId: left });
        const back = nextId();
        expect(await s().changeMembership({ channelId: id, expectedVersion: 2, add: [member("bob", back)], event: memberEvent(id, back, MemberChangeKind.ADDED, ["bob"]) })).toBe("ok");
        const rows = (await s().userChannels("bob")).filter((u) => u.channelId === id);
        expect(rows).toEqual([{ channelId: id, joinedId: back }]);
        expect((await s().getMember(id, "bob"))?.joinedId).toBe(back);
        expect((await s().getChannel(id))?.version).toBe(3);
      });

      it("userChannels lists every channel of the user", async () => {
        const user = `u-${randomUUID().slice(0, 8)}`;
        const a = await group(["alice", user]);
        const b = await group([user, "bob"]);
        const got = (await s().userChannels(user)).map((u) => u.channelId).sort();
        expect(got).toEqual([a.id, b.id].sort());
      });
    });

    describe("messages", () => {
      it("putMessage then getMessage returns the record field for field; putMessage twice is idempotent", async () => {
        const id = chId();
        const m = message(id, nextId());
        await s().putMessage(m);
        await s().putMessage(m);
        expect(await s().getMessage(id, m.id)).toEqual(m);
        expect(await s().getMessage(id, m.id + 1n)).toBeUndefined();
        expect((await s().history(id, { newest: true }, 10)).messages).toEqual([m]);
        expect((await s().eventsAfter(id, 0n, 10)).length).toBe(1);
      });

      it("putMessage keeps lastMessageId/lastEventId at the max (a smaller id never lowers them)", async () => {
        const { id, created } = await group();
        const a = nextId();
        const b = nextId();
        await s().putMessage(message(id, b));
        await s().putMessage(message(id, a));
        let ch = await s().getChannel(id);
        expect(ch?.lastMessageId).toBe(b);
        expect(ch?.lastEventId).toBe(b);
        expect(b > created).toBe(true);
        const c = nextId();
        await s().appendChange(change(id, c));
        await s().appendChange(change(id, created + 1n));
        ch = await s().getChannel(id);
        expect(ch?.lastMessageId).toBe(b);
        expect(ch?.lastEventId).toBe(c);
      });

      it("claimClientMessageId: 20 concurrent claims of one key, exactly one wins, all others see its message", async () => {
        const id = chId();
        const ms = Array.from({ length: 20 }, (_, i) => message(id, nextId(), { clientMessageId: "same-key", text: `try ${i}` }));
        const got = await Promise.all(ms.map((m) => s().claimClientMessageId(m)));
        const winners = got.map((g, i) => (g.claimed ? i : -1)).filter((i) => i >= 0);
        expect(winners).toHaveLength(1);
        const w = ms[winners[0]!]!;
        for (const g of got) {
          if (g.claimed) continue;
          expect(g.existing.id).toBe(w.id);
          expect(g.existing.text).toBe(w.text);
          expect(g.existing.createdAt.getTime()).toBe(w.createdAt.getTime());
          expect(g.existing.senderId).toBe("alice");
          expect(g.existing.clientMessageId).toBe("same-key");
        }
        // Other senders and other keys are independent.
        expect((await s().claimClientMessageId(message(id, nextId(), { clientMessageId: "same-key", senderId: "bob" }))).claimed).toBe(true);
        expect((await s().claimClientMessageId(message(id, nextId(), { clientMessageId: "other-key" }))).claimed).toBe(true);
      });

      it("findClaim / recordClaim: plain claim records, the larger write time wins whatever the landing order", async () => {
        const id = chId();
        const early = message(id, nextId(), { clientMessageId: "k", text: "early" });
        const late = message(id, nextId(), { clientMessageId: "k", text: "late" });
        expect(await s().findClaim(id, "alice", "k")).toBeUndefined();
        await s().recordClaim(late, 2_000_000n);
        await s().recordClaim(early, 1_000_000n);
        expect(await s().findClaim(id, "alice", "k")).toMatchObject({ id: late.id, text: "late" });
        expect(await s().findClaim(id, "bob", "k")).toBeUndefined();
        // Once the message row landed it is what a retry gets (it may have been deleted since).
        await s().putMessage(late);
        await s().deleteMessage(id, late.id, "alice", new Date(T0 + 1000));
        expect(await s().findClaim(id, "alice", "k")).toMatchObject({ id: late.id, text: "", deleted: true });
      });

      describe("LockedClaims on this engine's cache", () => {
        const claims = (now?: () => number) => new LockedClaims(s(), f.cache, { keyspace: `conf_${randomUUID().slice(0, 8)}`, ...(now ? { now } : {}) });

        it("20 concurrent claims of one key: exactly one wins, all others get its message", async () => {
          const id = chId();
          const arbiter = claims();
          const ms = Array.from({ length: 20 }, (_, i) => message(id, nextId(), { clientMessageId: "same-key", text: `try ${i}` }));
          const got = await Promise.all(ms.map((m) => arbiter.claim(m)));
          const winners = got.map((g, i) => (g.claimed ? i : -1)).filter((i) => i >= 0);
          expect(winners).toHaveLength(1);
          const w = ms[winners[0]!]!;
          for (const g of got) if (!g.claimed) expect([g.existing.id, g.existing.text]).toEqual([w.id, w.text]);
        });

        it("a retry long after the first send (its lock gone) gets the first message", async () => {
          const id = chId();
          const first = message(id, nextId(), { clientMessageId: "retry-key" });
          expect((await claims().claim(first)).claimed).toBe(true);
          await s().putMessage(first);
          // Another arbiter scope: the first lock is not there, the database record is.
          const again = await claims().claim(message(id, nextId(), { clientMessageId: "retry-key" }));
          expect(again.claimed).toBe(false);
          expect(!again.claimed && again.existing.id).toBe(first.id);
        });

        it("a lock holder slower than the safe window does not claim: UNAVAILABLE, nothing claimed twice", async () => {
          const id = chId();
          let t = T0;
          const slow = message(id, nextId(), { clientMessageId: "slow-key" });
          const store = s();
          const stalling = new LockedClaims(
            { ...store, findClaim: store.findClaim.bind(store), recordClaim: async (m, at) => { t += LOCK_SAFE_MS; return store.recordClaim(m, at); } } as typeof store,
            f.cache,
            { keyspace: `conf_${randomUUID().slice(0, 8)}`, now: () => t },
          );
          const err = await stalling.claim(slow).catch((e: unknown) => e);
          expect(isDomainError(err) && err.kind).toBe("Unavailable");
          // A later send (a new lock, a later write time) claims, and its record wins over the slow one's.
          t += 30_000;
          const later = message(id, nextId(), { clientMessageId: "slow-key" });
          await store.recordClaim(later, BigInt(t) * 1000n);
          await store.recordClaim(slow, BigInt(T0) * 1000n);
          expect((await store.findClaim(id, "alice", "slow-key"))?.id).toBe(later.id);
        });

        it("with the cache down, claims go through the store's atomic claim", async () => {
          const id = chId();
          const down = async () => {
            throw new Error("cache down");
          };
          const arbiter = new LockedClaims(s(), { ...f.cache, setIfAbsent: down }, { keyspace: "conf_down" });
          const ms = Array.from({ length: 5 }, () => message(id, nextId(), { clientMessageId: "down-key" }));
          const got = await Promise.all(ms.map((m) => arbiter.claim(m)));
          expect(got.filter((g) => g.claimed)).toHaveLength(1);
        });
      });

      it("history newest/before/after with hasMore, across time buckets years apart", async () => {
        const id = chId();
        // 3 messages in each of 4 buckets spread over 3 years, plus empty years between.
        const times = [T0 - 3 * YEAR, T0 - 2 * YEAR, T0 - 15 * DAY, T0];
        const ids = times.flatMap((t) => [idAt(t, 1), idAt(t + 1, 2), idAt(t + 2, 3)]);
        await Promise.all(ids.map((i) => s().putMessage(message(id, i))));

        let p = await s().history(id, { newest: true }, 5);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(7));
        expect(p.hasMore).toBe(true);
        p = await s().history(id, { beforeId: ids[7]! }, 5);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(2, 7));
        expect(p.hasMore).toBe(true);
        p = await s().history(id, { beforeId: ids[2]! }, 5);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(0, 2));
        expect(p.hasMore).toBe(false);
        p = await s().history(id, { beforeId: ids[3]! }, 3);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(0, 3));
        expect(p.hasMore).toBe(false);

        p = await s().history(id, { afterId: 0n }, 4);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(0, 4));
        expect(p.hasMore).toBe(true);
        p = await s().history(id, { afterId: ids[3]! }, 7);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(4, 11));
        expect(p.hasMore).toBe(true);
        p = await s().history(id, { afterId: ids[8]! }, 3);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(9));
        expect(p.hasMore).toBe(false);
        p = await s().history(id, { afterId: ids[11]! }, 3);
        expect(p).toEqual({ messages: [], hasMore: false });

        p = await s().history(id, { newest: true }, 500);
        expect(p.messages.map((m) => m.id)).toEqual(ids);
        expect(p.hasMore).toBe(false);
        // An anchor in an empty stretch between buckets.
        p = await s().history(id, { beforeId: idAt(T0 - YEAR) }, 2);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(4, 6));
        expect(p.hasMore).toBe(true);
        expect(await s().history(chId(), { newest: true }, 10)).toEqual({ messages: [], hasMore: false });
      });

      it("history pages over 150 buckets of uneven density are exact (the waves are sized from the density)", async () => {
        const id = chId();
        // One bucket in three holds 3 messages, the others 1 or none: the density changes along the walk.
        const ids: bigint[] = [];
        for (let k = 149; k >= 0; k--) {
          const n = k % 3 === 0 ? 3 : k % 5 === 0 ? 0 : 1;
          for (let j = 0; j < n; j++) ids.push(idAt(T0 - k * 11 * DAY + j, j + 1));
        }
        await Promise.all(ids.map((i) => s().putMessage(message(id, i))));
        let p = await s().history(id, { newest: true }, 50);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(-50));
        expect(p.hasMore).toBe(true);
        for (const at of [ids.length - 1, 170, 97, 40, 12]) {
          p = await s().history(id, { beforeId: ids[at]! }, 50);
          expect(p.messages.map((m) => m.id)).toEqual(ids.slice(Math.max(0, at - 50), at));
          expect(p.hasMore).toBe(at > 50);
        }
        p = await s().history(id, { afterId: ids[20]! }, 50);
        expect(p.messages.map((m) => m.id)).toEqual(ids.slice(21, 71));
        p = await s().history(id, { newest: true }, 500);
        expect(p.messages.map((m) => m.id)).toEqual(ids);
        expect(p.hasMore).toBe(false);
      });

      it("eventsAfter merges messages and changes in id order, honours limit and untilId, across buckets", async () => {
        const id = chId();
        const m1 = idAt(T0 - 2 * YEAR, 1);
        const c1 = idAt(T0 - 2 * YEAR, 2);
        const m2 = idAt(T0 - 30 * DAY, 1);
        const c2 = idAt(T0, 1);
        const m3 = idAt(T0, 2);
        const c3 = idAt(T0 + 1, 1);
        await s().putMessage(message(id, m3));
        await s().appendChange(change(id, c2, "deleted"));
        await s().putMessage(message(id, m1));
        await s().appendChange(change(id, c3));
        await s().appendChange(change(id, c1));
        await s().putMessage(message(id, m2));

        const all = await s().eventsAfter(id, 0n, 100);
        expect(all.map((e) => [e.kind, e.id])).toEqual([
          ["message", m1],
          ["change", c1],
          ["message", m2],
          ["change", c2],
          ["message", m3],
          ["change", c3],
        ]);
        const first = all[0]!;
        expect(first.kind === "message" && first.message).toEqual(message(id, m1));
        const ch = all[3]!;
        expect(ch.kind === "change" && ch.change.kind).toBe("deleted");
        expect(ch.kind === "change" && ch.change.event.event.case).toBe("receipt");
        expect(ch.kind === "change" && ch.change.event.eventId).toBe(c2);

        expect((await s().eventsAfter(id, m1, 2)).map((e) => e.id)).toEqual([c1, m2]);
        expect((await s().eventsAfter(id, c1, 100, c2)).map((e) => e.id)).toEqual([m2, c2]);
        expect((await s().eventsAfter(id, 0n, 100, m1)).map((e) => e.id)).toEqual([m1]);
        expect((await s().eventsAfter(id, c3, 100)).map((e) => e.id)).toEqual([]);
        expect((await s().eventsAfter(id, m2, 3, c3)).map((e) => e.id)).toEqual([c2, m3, c3]);
        expect((await s().eventsAfter(chId(), 0n, 10)).length).toBe(0);
      });

      it("deleteMessage leaves a tombstone (text gone), twice is a no-op returning true, unknown is false", async () => {
        const id = chId();
        const m = message(id, nextId(), { text: "secret" });
        expect((await s().claimClientMessageId(m)).claimed).toBe(true);
        await s().putMessage(m);
        const at = new Date(T0 + 5000);
        expect(await s().deleteMessage(id, m.id, "alice", at)).toBe(true);
        const tomb = { ...m, text: "", deleted: true, deletedAt: at, deletedBy: "alice" };
        expect(await s().getMessage(id, m.id)).toEqual(tomb);
        expect(await s().deleteMessage(id, m.id, "bob", new Date(T0 + 9000))).toBe(true);
        expect(await s().getMessage(id, m.id)).toEqual(tomb);
        expect(await s().deleteMessage(id, m.id + 1n, "alice", at)).toBe(false);
        expect(await s().deleteMessage(chId(), m.id, "alice", at)).toBe(false);
        expect((await s().history(id, { newest: true }, 10)).messages).toEqual([tomb]);
        const ev = await s().eventsAfter(id, 0n, 10);
        expect(ev[0]?.kind === "message" && ev[0].message).toEqual(tomb);
        // A retried send of the deleted message neither resurrects the text nor reveals it.
        await s().putMessage(m);
        expect(await s().getMessage(id, m.id)).toEqual(tomb);
        const again = await s().claimClientMessageId({ ...m, id: nextId() });
        expect(again.claimed).toBe(false);
        expect(!again.claimed && again.existing.id).toBe(m.id);
        expect(!again.claimed && again.existing.text).toBe("");
      });

      it("deleteMessage also removes the text from a change re-announcing the message", async () => {
        const id = chId();
        const m = message(id, nextId(), { text: "announced secret" });
        await s().putMessage(m);
        const cid = nextId();
        await s().appendChange({
          id: cid,
          channelId: id,
          kind: "message",
          createdAt: new Date(T0),
          event: create(ChatEventSchema, {
            eventId: cid,
            event: { case: "message", value: create(MessageSchema, { messageId: m.id, channelId: id, senderId: "alice", text: m.text }) },
          }),
        });
        const at = new Date(T0 + 1000);
        expect(await s().deleteMessage(id, m.id, "alice", at)).toBe(true);
        const evs = await s().eventsAfter(id, 0n, 10);
        expect(evs.map((e) => e.id)).toEqual([m.id, cid]);
        const c = evs[1]!;
        if (c.kind !== "change" || c.change.event.event.case !== "message") throw new Error("expected the re-announce");
        expect(c.change.event.event.value.text).toBe("");
        expect(c.change.event.event.value.deleted).toBe(true);
        expect(c.change.event.event.value.messageId).toBe(m.id);
        expect(c.change.event.eventId).toBe(cid);
      });

      it("countUnread counts others' live messages after the id, at most cap", async () => {
        const id = chId();
        const ids = Array.from({ length: 8 }, () => nextId());
        await Promise.all(ids.map((i, n) => s().putMessage(message(id, i, { senderId: n % 4 === 0 ? "bob" : "alice" }))));
        // bob sent ids[0] and ids[4]; delete ids[5]
        expect(await s().deleteMessage(id, ids[5]!, "alice", new Date(T0))).toBe(true);
        expect(await s().countUnread(id, "bob", 0n, 100)).toBe(5);
        expect(await s().countUnread(id, "bob", ids[1]!, 100)).toBe(4);
        expect(await s().countUnread(id, "bob", 0n, 2)).toBe(2);
        expect(await s().countUnread(id, "alice", 0n, 100)).toBe(2);
        expect(await s().countUnread(id, "carol", ids[7]!, 100)).toBe(0);
        expect(await s().countUnread(chId(), "bob", 0n, 100)).toBe(0);
      });

      it("countUnread spans buckets years apart", async () => {
        const id = chId();
        const ids = [idAt(T0 - 2 * YEAR), idAt(T0 - YEAR), idAt(T0)];
        await Promise.all(ids.map((i) => s().putMessage(message(id, i))));
        expect(await s().countUnread(id, "bob", 0n, 10)).toBe(3);
        expect(await s().countUnread(id, "bob", ids[0]!, 10)).toBe(2);
      });

      it("changes keep their event (round trip) and a healed message change carries the message", async () => {
        const id = chId();
        const cid = nextId();
        const msg = create(MessageSchema, { messageId: 5n, channelId: id, senderId: "alice", text: "late" });
        const rec: ChangeRecord = {
          id: cid,
          channelId: id,
          kind: "message",
          createdAt: new Date(T0),
          event: create(ChatEventSchema, { eventId: cid, time: timestampFromMs(T0), event: { case: "message", value: msg } }),
        };
        await s().appendChange(rec);
        const del = nextId();
        await s().appendChange({
          ...change(id, del, "deleted"),
          event: create(ChatEventSchema, {
            eventId: del,
            event: { case: "deleted", value: create(MessageDeletedSchema, { channelId: id, messageId: 5n, deletedBy: "alice" }) },
          }),
        });
        const evs = await s().eventsAfter(id, 0n, 10);
        expect(evs.map((e) => e.id)).toEqual([cid, del]);
        const e0 = evs[0]!;
        if (e0.kind !== "change") throw new Error("expected a change");
        expect(e0.change.kind).toBe("message");
        expect(e0.change.createdAt.getTime()).toBe(T0);
        expect(e0.change.event.event.case === "message" && e0.change.event.event.value.text).toBe("late");
        // Mutating what was returned (a per-reader cursor) does not change the stored event.
        e0.change.event.cursor = "mine";
        const again = await s().eventsAfter(id, 0n, 1);
        expect(again[0]?.kind === "change" && again[0].change.event.cursor).toBe("");
      });
    });

    describe("markers", () => {
      it("advanceReadMarker is monotonic and returns the effective value; readMarkers reads a batch (0n when none)", async () => {
        const a = chId();
        const b = chId();
        const user = `u-${randomUUID().slice(0, 8)}`;
        const hi = nextId();
        const lo = hi - 10n;
        expect(await s().advanceReadMarker(user, a, hi)).toBe(hi);
        expect(await s().advanceReadMarker(user, a, lo)).toBe(hi);
        expect(await s().advanceReadMarker(user, a, hi)).toBe(hi);
        expect(await s().advanceReadMarker(user, b, lo)).toBe(lo);
        const higher = hi + 5n;
        expect(await s().advanceReadMarker(user, b, higher)).toBe(higher);
        const none = chId();
        const m = await s().readMarkers(user, [a, b, none]);
        expect(m.get(a)).toBe(hi);
        expect(m.get(b)).toBe(higher);
        expect(m.get(none)).toBe(0n);
        expect((await s().readMarkers("someone-else", [a])).get(a)).toBe(0n);
        expect((await s().readMarkers(user, [])).size).toBe(0);
      });

      it("concurrent advances settle on the largest id", async () => {
        const a = chId();
        const ids = Array.from({ length: 20 }, () => nextId());
        const shuffled = [...ids].sort(() => Math.random() - 0.5);
        const got = await Promise.all(shuffled.map((i) => s().advanceReadMarker("racer", a, i)));
        for (const [n, g] of got.entries()) expect(g >= shuffled[n]!).toBe(true);
        expect((await s().readMarkers("racer", [a])).get(a)).toBe(ids[ids.length - 1]);
      });

      it("advanceDeliveredMarker is monotonic per (user, device, channel)", async () => {
        const a = chId();
        const hi = nextId();
        expect(await s().advanceDeliveredMarker("bob", "phone", a, hi)).toBe(hi);
        expect(await s().advanceDeliveredMarker("bob", "phone", a, hi - 1n)).toBe(hi);
        expect(await s().advanceDeliveredMarker("bob", "laptop", a, hi - 1n)).toBe(hi - 1n);
        expect(await s().advanceDeliveredMarker("carol", "phone", a, 3n)).toBe(3n);
        // Read markers are separate from delivered ones.
        expect((await s().readMarkers("bob", [a])).get(a)).toBe(0n);
      });
    });
  });
}
