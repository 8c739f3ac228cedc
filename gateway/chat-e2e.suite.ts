/**
 * Issue 9 acceptance, end to end through one gateway port, run on both engines: two users with
 * two devices each (alice: a1 a2, bob: b1 b2) and carol, a direct channel alice-bob and a group
 * of three. Live devices subscribe over different protocols (Connect HTTP/1.1 JSON and binary,
 * Connect h2c, gRPC-web HTTP/1.1 and h2c, gRPC h2c), messages are sent over each of them, and
 * every message must reach every subscribed device of every member exactly once, in id order
 * per channel. b2 is offline at first and Syncs from its saved cursor. Only the public contract
 * is used: nothing here knows how the chat service is built.
 *
 * The tests run in order and share state, like a user session.
 */
import { ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  ChannelType,
  MemberChangeKind,
  MemberRole,
  ReceiptKind,
  SessionRequestSchema,
  type Channel,
  type SessionRequest,
  type SessionResponse,
} from "../gen/switchboard/chat/v1/chat_pb.js";
import { create } from "@bufbuild/protobuf";
import { waitFor as waitForAny } from "../testkit/processes.js";
import { bearer, chatClient, LiveDevice, syncAll, type ChatClient, type Protocol } from "./chat-wire.js";

/** waitFor, except that a device whose stream ended fails the wait at once instead of at the timeout. */
class Fatal {
  constructor(readonly reason: string) {}
}
async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = LIVE_WAIT_MS): Promise<T> {
  const v = await waitForAny<T | Fatal>(what, async () => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof EndedStream) return new Fatal(e.message);
      throw e;
    }
  }, timeoutMs);
  if (v instanceof Fatal) throw new Error(`waiting for ${what}: ${v.reason}`);
  return v;
}
class EndedStream extends Error {}
const assertOpen = (d: LiveDevice) => {
  if (d.end !== undefined) throw new EndedStream(`${d} ended: ${String(d.end)}`);
};

export interface ChatE2eTarget {
  readonly baseUrl: string;
  tokenFor(userId: string): string;
}

const LIVE_WAIT_MS = 20_000;
/** The protocols messages are sent over, in rotation. */
const SEND_PROTOCOLS: readonly Protocol[] = ["connect-json-1.1", "connect-1.1", "grpc-web-1.1", "grpc"];

interface Sent {
  readonly id: bigint;
  readonly channelId: string;
  readonly senderId: string;
  readonly text: string;
}

export function chatEndToEndSuite(engine: string, target: () => ChatE2eTarget): void {
  describe(`chat end to end through the gateway (${engine} engine)`, () => {
    const run = `${engine}-${Date.now().toString(36)}`;
    const ALICE = `alice-${run}`;
    const BOB = `bob-${run}`;
    const CAROL = `carol-${run}`;
    const DAVE = `dave-${run}`;
    const client = (user: string, protocol: Protocol = "connect-1.1"): ChatClient =>
      chatClient(target().baseUrl, protocol, bearer(target().tokenFor(user)));

    let direct = "";
    let group = "";
    const sent: Sent[] = [];
    const devices: LiveDevice[] = [];
    const device = (user: string, id: string, protocol: Protocol) => {
      const d = new LiveDevice(user, id, protocol, () => client(user, protocol));
      devices.push(d);
      return d;
    };
    const a1 = device(ALICE, "a1", "connect-json-1.1");
    const a2 = device(ALICE, "a2", "grpc-web-1.1");
    const b1 = device(BOB, "b1", "grpc");
    const b2 = device(BOB, "b2", "grpc-web-h2");
    const c1 = device(CAROL, "c1", "connect-h2");
    let b2Cursor = "";
    /** b2's cursor right after its first Sync: the later Sync checks start from it. */
    let b2CursorAfterFirstSync = "";

    const send = async (user: string, channelId: string, text: string, protocol: Protocol): Promise<Sent> => {
      const res = await client(user, protocol).sendMessage({ channelId, clientMessageId: `cm-${text}`, text });
      const m = res.message!;
      expect(res.duplicate).toBe(false);
      expect(m.channelId).toBe(channelId);
      expect(m.senderId).toBe(user);
      expect(m.text).toBe(text);
      expect(m.messageId).toBeGreaterThan(0n);
      const s = { id: m.messageId, channelId, senderId: user, text };
      sent.push(s);
      return s;
    };

    /**
     * Subscribe registers asynchronously (the stream says nothing until an event): typing from a
     * peer is the probe; each device is live once a typing indicator reached it. Pokes at most
     * once a second, which stays inside the typing rate limit most of the time; a refusal is
     * simply retried later.
     */
    const untilLive = async (probes: readonly { device: LiveDevice; from: string; channel: () => string }[]) => {
      let lastPoke = 0;
      await waitFor(
        `live streams of ${probes.map((p) => String(p.device)).join(", ")}`,
        async () => {
          for (const p of probes) assertOpen(p.device);
          const pending = probes.filter((p) => p.device.of("typing").length === 0);
          if (pending.length === 0) return true;
          if (Date.now() - lastPoke >= 1_000) {
            lastPoke = Date.now();
            const pokes = new Map(pending.map((p) => [`${p.from} ${p.channel()}`, p]));
            await Promise.all(
              [...pokes.values()].map((p) => client(p.from).sendTyping({ channelId: p.channel(), active: true }).catch(() => undefined)),
            );
          }
          return undefined;
        },
        LIVE_WAIT_MS,
      );
    };

    const waitDelivered = (what: string, targets: readonly LiveDevice[], ids: readonly bigint[], channelId?: string) =>
      waitFor(
        `${what} to reach ${targets.join(", ")}`,
        async () => {
          for (const d of targets) {
            assertOpen(d);
            const got = new Set(d.messageIds(channelId));
            if (!ids.every((id) => got.has(id))) return undefined;
          }
          return true;
        },
        LIVE_WAIT_MS,
      );

    const channelsOf = async (user: string): Promise<Channel[]> => (await client(user).listMyChannels({ pageSize: 100 })).channels;
    /**
     * The unread count ListMyChannels reports. Soft-fails when the contract carries none, so the
     * rest of each test (live receipts, deletes, membership) still runs and reports.
     */
    const unreadOf = async (user: string, channelId: string): Promise<number | undefined> => {
      const ch = (await channelsOf(user)).find((c) => c.channelId === channelId);
      if (!ch) return undefined;
      const value = (ch as unknown as { unreadCount?: number | bigint }).unreadCount;
      expect.soft(value, "ListMyChannels' Channel carries an unread count (issue 9: exact unread counts)").toBeDefined();
      return value === undefined ? Number.NaN : Number(value);
    };
    /** expect.soft for unread counts: a wrong count is reported without hiding what follows. */
    const expectUnread = async (user: string, channelId: string, expected: number, why: string) =>
      expect.soft(await unreadOf(user, channelId), `${user}'s unread count in ${channelId === direct ? "direct" : "group"}: ${why}`).toBe(expected);

    it("b2 saves a cursor before anything happens (Sync with no cursor: no events, a cursor)", async () => {
      const res = await client(BOB).sync({ deviceId: "b2", cursor: "" });
      expect(res.events).toEqual([]);
      expect(res.nextCursor).not.toBe("");
      expect(res.reset).toBe(false);
      b2Cursor = res.nextCursor;
    });

    it("creates the direct channel once for both users, and the group of three with roles", async () => {
      const first = await client(ALICE).createDirectChannel({ peerUserId: BOB });
      expect(first.created).toBe(true);
      direct = first.channel!.channelId;
      expect(first.channel!.type).toBe(ChannelType.DIRECT);
      expect(first.channel!.members.map((m) => m.userId).sort()).toEqual([ALICE, BOB].sort());
      expect(first.channel!.members.every((m) => m.role === MemberRole.MEMBER)).toBe(true);
      const again = await client(BOB, "grpc").createDirectChannel({ peerUserId: ALICE });
      expect(again.created).toBe(false);
      expect(again.channel!.channelId).toBe(direct);

      const g = await client(ALICE, "grpc-web-1.1").createGroupChannel({ name: "trio", memberUserIds: [BOB, CAROL], requestId: `trio-${run}` });
      group = g.channel!.channelId;
      expect(g.channel!.type).toBe(ChannelType.GROUP);
      expect(g.channel!.name).toBe("trio");
      const roles = Object.fromEntries(g.channel!.members.map((m) => [m.userId, m.role]));
      expect(roles).toEqual({ [ALICE]: MemberRole.OWNER, [BOB]: MemberRole.MEMBER, [CAROL]: MemberRole.MEMBER });
      const retried = await client(ALICE).createGroupChannel({ name: "trio", memberUserIds: [BOB, CAROL], requestId: `trio-${run}` });
      expect(retried.channel!.channelId).toBe(group);
      expect((await client(CAROL).getChannel({ channelId: group })).channel!.members).toHaveLength(3);
    });

    it("subscribes a1, a2, b1, c1 over four protocols; typing reaches the others live", async () => {
      for (const d of [a1, a2, b1, c1]) d.start();
      await untilLive([
        { device: a1, from: BOB, channel: () => direct },
        { device: a2, from: BOB, channel: () => direct },
        { device: b1, from: ALICE, channel: () => direct },
        { device: c1, from: ALICE, channel: () => group },
      ]);
      const t = a1.of("typing").find((x) => x.channelId === direct)!;
      expect(t).toMatchObject({ channelId: direct, userId: BOB, active: true });
      expect(c1.of("typing").every((x) => x.channelId === group && x.userId === ALICE)).toBe(true);
      // Typing is ephemeral: never a stored event id, never a cursor.
      for (const d of [a1, a2, b1, c1]) {
        for (const e of d.events.filter((x) => x.event.case === "typing")) {
          expect(e.eventId).toBe(0n);
          expect(e.cursor).toBe("");
        }
      }
    });

    it("every message, sent over every protocol, reaches every subscribed device of every member exactly once, in id order", async () => {
      let n = 0;
      for (const protocol of SEND_PROTOCOLS) {
        await send(ALICE, direct, `d-alice-${protocol}-${n++}`, protocol);
        await send(BOB, direct, `d-bob-${protocol}-${n++}`, protocol);
        await send(ALICE, group, `g-alice-${protocol}-${n++}`, protocol);
        await send(BOB, group, `g-bob-${protocol}-${n++}`, protocol);
        await send(CAROL, group, `g-carol-${protocol}-${n++}`, protocol);
      }
      const directIds = sent.filter((s) => s.channelId === direct).map((s) => s.id);
      const groupIds = sent.filter((s) => s.channelId === group).map((s) => s.id);
      // Sequential sends: each id is larger than the one before.
      expect([...directIds].sort(cmp)).toEqual(directIds);
      expect([...groupIds].sort(cmp)).toEqual(groupIds);
      await waitDelivered("the direct messages", [a1, a2, b1], directIds, direct);
      await waitDelivered("the group messages", [a1, a2, b1, c1], groupIds, group);
      for (const d of [a1, a2, b1]) expect(d.messageIds(direct), `${d} direct`).toEqual(directIds);
      for (const d of [a1, a2, b1, c1]) expect(d.messageIds(group), `${d} group`).toEqual(groupIds);
      expect(c1.messageIds(direct), "carol is not in the direct channel").toEqual([]);
      // Live message events carry their id as event id, and a cursor to save.
      for (const e of a1.events.filter((x) => x.event.case === "message")) {
        expect(e.eventId).toBe((e.event.value as { messageId: bigint }).messageId);
        expect(e.cursor).not.toBe("");
      }
      // What arrived is what was stored.
      const texts = new Map(sent.map((s) => [s.id, s.text]));
      for (const e of b1.events) if (e.event.case === "message") expect(e.event.value.text).toBe(texts.get(e.event.value.messageId));
    });

    it("a browser-like Connect JSON SendMessage over fetch: ids are decimal strings, the message goes live", async () => {
      const res = await fetch(`${target().baseUrl}/switchboard.chat.v1.ChatService/SendMessage`, {
        method: "POST",
        headers: { ...bearer(target().tokenFor(BOB)), "content-type": "application/json", "connect-protocol-version": "1" },
        body: JSON.stringify({ channelId: direct, clientMessageId: `fetch-${run}`, text: "from a browser" }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const body = (await res.json()) as { message: Record<string, unknown>; duplicate?: boolean };
      expect(body.message["messageId"]).toMatch(/^[1-9]\d*$/);
      expect(body.message).toMatchObject({ channelId: direct, senderId: BOB, clientMessageId: `fetch-${run}`, text: "from a browser" });
      expect(String(body.message["createTime"])).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      expect(body.duplicate ?? false).toBe(false);
      const id = BigInt(body.message["messageId"] as string);
      expect(id).toBeGreaterThan(sent.at(-1)!.id);
      sent.push({ id, channelId: direct, senderId: BOB, text: "from a browser" });
      await waitDelivered("the fetch message", [a1, a2, b1], [id], direct);
    });

    it("b2, offline so far, Syncs from its saved cursor and gets exactly what it missed, in order, without typing", async () => {
      const res = await syncAll(client(BOB, "grpc-web-h2"), "b2", b2Cursor, 7);
      expect(res.reset).toBe(false);
      const messages = res.events.filter((e) => e.event.case === "message").map((e) => (e.event.value as { messageId: bigint }).messageId);
      expect(messages).toEqual(sent.map((s) => s.id));
      const ids = res.events.map((e) => e.eventId);
      expect(ids.every((id) => id > 0n), "every Sync event is a stored one (no typing, no keep-alive)").toBe(true);
      expect([...ids].sort(cmp), "Sync is in id order").toEqual(ids);
      expect(res.events.some((e) => e.event.case === "typing")).toBe(false);
      const created = res.events.flatMap((e) => (e.event.case === "memberChange" ? [e.event.value] : []));
      expect(created.some((c) => c.channelId === group && c.kind === MemberChangeKind.CREATED)).toBe(true);
      expect(res.cursor).not.toBe("");
      b2CursorAfterFirstSync = res.cursor;
      // Nothing new since: a second Sync from the returned cursor returns at most the unsettled tail again.
      const again = await syncAll(client(BOB), "b2", res.cursor);
      const known = new Set(ids);
      expect(again.events.filter((e) => !known.has(e.eventId))).toEqual([]);
    });

    it("b2 comes online over gRPC-web on HTTP/2", async () => {
      b2.start();
      await untilLive([{ device: b2, from: ALICE, channel: () => direct }]);
      const m = await send(ALICE, direct, "d-alice-after-b2", "grpc");
      await waitDelivered("alice's message", [a1, a2, b1, b2], [m.id], direct);
    });

    it("unread counts are exact in ListMyChannels, and reads reach alice's devices live as READ receipts", async () => {
      const directFromAlice = sent.filter((s) => s.channelId === direct && s.senderId === ALICE);
      const groupFromOthers = sent.filter((s) => s.channelId === group && s.senderId !== BOB);
      await expectUnread(BOB, direct, directFromAlice.length, "alice's direct messages, none read");
      await expectUnread(BOB, group, groupFromOthers.length, "alice's and carol's group messages, none read");
      await expectUnread(ALICE, direct, sent.filter((s) => s.channelId === direct && s.senderId === BOB).length, "bob's direct messages, none read");

      // Bob reads the direct channel up to alice's second message.
      const upTo = directFromAlice[1]!.id;
      const read = await client(BOB, "grpc").markRead({ channelId: direct, upToId: upTo });
      expect(read.readUpToId).toBe(upTo);
      const remaining = directFromAlice.filter((s) => s.id > upTo).length;
      await expectUnread(BOB, direct, remaining, "after MarkRead up to alice's second message");
      // Monotonic: a lower marker changes nothing.
      expect((await client(BOB).markRead({ channelId: direct, upToId: directFromAlice[0]!.id })).readUpToId).toBe(upTo);
      await expectUnread(BOB, direct, remaining, "a lower MarkRead changes nothing");
      const ch = (await channelsOf(BOB)).find((c) => c.channelId === direct)!;
      expect(ch.readUpToId).toBe(upTo);

      for (const d of [a1, a2]) {
        await waitFor(`bob's READ receipt at ${d}`, async () =>
          d.of("receipt").some((r) => r.kind === ReceiptKind.READ && r.userId === BOB && r.channelId === direct && r.upToId === upTo) ? true : undefined,
        LIVE_WAIT_MS);
      }
      // Reading everything clears the count.
      await client(BOB).markRead({ channelId: direct, upToId: sent.filter((s) => s.channelId === direct).at(-1)!.id });
      await expectUnread(BOB, direct, 0, "after reading everything");
    });

    it("MarkDelivered by b1 reaches alice's devices live as a DELIVERED receipt naming the device", async () => {
      const upTo = sent.filter((s) => s.channelId === direct).at(-1)!.id;
      const res = await client(BOB, "connect-h2").markDelivered({ deviceId: "b1", channelId: direct, upToId: upTo });
      expect(res.deliveredUpToId).toBe(upTo);
      for (const d of [a1, a2]) {
        await waitFor(`b1's DELIVERED receipt at ${d}`, async () =>
          d.of("receipt").some((r) => r.kind === ReceiptKind.DELIVERED && r.userId === BOB && r.deviceId === "b1" && r.upToId === upTo) ? true : undefined,
        LIVE_WAIT_MS);
      }
    });

    it("delete for everyone reaches members live, lowers the unread count and leaves a tombstone in history", async () => {
      const victim = sent.find((s) => s.channelId === group && s.senderId === CAROL)!;
      // Bob has read nothing in the group yet.
      const before = sent.filter((s) => s.channelId === group && s.senderId !== BOB).length;
      await expectUnread(BOB, group, before, "nothing read yet");
      await client(CAROL, "grpc").deleteMessage({ channelId: group, messageId: victim.id });
      for (const d of [a1, a2, b1, b2, c1]) {
        await waitFor(`the delete at ${d}`, async () =>
          d.of("deleted").some((x) => x.channelId === group && x.messageId === victim.id && x.deletedBy === CAROL) ? true : undefined,
        LIVE_WAIT_MS);
      }
      await expectUnread(BOB, group, before - 1, "one unread message deleted");
      const history = await client(BOB).getHistory({ channelId: group, pageSize: 200 });
      const tomb = history.messages.find((m) => m.messageId === victim.id)!;
      expect(tomb).toBeDefined();
      expect(tomb.deleted).toBe(true);
      expect(tomb.text).toBe("");
      expect(tomb.deleteTime).toBeDefined();
      // Every other message is there, ascending, with its text.
      expect(history.messages.map((m) => m.messageId)).toEqual(sent.filter((s) => s.channelId === group).map((s) => s.id));
      // An admin may delete others' messages: alice (owner) deletes one of bob's.
      const bobs = sent.find((s) => s.channelId === group && s.senderId === BOB)!;
      await client(ALICE).deleteMessage({ channelId: group, messageId: bobs.id });
      await waitFor("the owner's delete at c1", async () => (c1.of("deleted").some((x) => x.messageId === bobs.id) ? true : undefined), LIVE_WAIT_MS);
      // Bob's own message was never unread for him: his count stays.
      await expectUnread(BOB, group, before - 1, "his own message deleted: not his unread");
      // Deleting again succeeds (idempotent).
      await client(ALICE).deleteMessage({ channelId: group, messageId: bobs.id });
    });

    it("membership changes (add, remove, leave) reach members live", async () => {
      const added = await client(ALICE).addMembers({ channelId: group, userIds: [DAVE] });
      expect(added.addedUserIds).toEqual([DAVE]);
      expect(added.channel!.members.map((m) => m.userId).sort()).toEqual([ALICE, BOB, CAROL, DAVE].sort());
      await client(ALICE).removeMember({ channelId: group, userId: DAVE });
      // Carol's deleted message no longer counts; bob's own never did.
      const unreadBeforeLeave = sent.filter((s) => s.channelId === group && s.senderId !== BOB).length - 1;
      await expectUnread(BOB, group, unreadBeforeLeave, "add and remove change no count");
      await client(CAROL).leaveChannel({ channelId: group });
      const kinds = (d: LiveDevice) => d.of("memberChange").filter((c) => c.channelId === group);
      for (const d of [a1, a2, b1, b2]) {
        await waitFor(`add, remove and leave at ${d}`, async () => {
          const k = kinds(d);
          const ok =
            k.some((c) => c.kind === MemberChangeKind.ADDED && c.userIds.includes(DAVE) && c.actorId === ALICE) &&
            k.some((c) => c.kind === MemberChangeKind.REMOVED && c.userIds.includes(DAVE) && c.actorId === ALICE) &&
            k.some((c) => c.kind === MemberChangeKind.LEFT && c.userIds.includes(CAROL));
          return ok ? true : undefined;
        }, LIVE_WAIT_MS);
      }
      const left = kinds(a1).find((c) => c.kind === MemberChangeKind.LEFT)!;
      expect(left.channel!.members.map((m) => m.userId).sort()).toEqual([ALICE, BOB].sort());
      // Carol saw her group's add and remove before she left.
      await waitFor("the add at c1", async () => (kinds(c1).some((c) => c.kind === MemberChangeKind.ADDED) ? true : undefined), LIVE_WAIT_MS);
      // After leaving: the group is gone from carol's list and she gets its messages no more.
      expect((await channelsOf(CAROL)).map((c) => c.channelId)).not.toContain(group);
      // Carol's messages stay in history: bob's unread count does not change because she left.
      await expectUnread(BOB, group, unreadBeforeLeave, "carol left; her messages stay");
      const m = await send(ALICE, group, "g-alice-after-leave", "connect-1.1");
      await waitDelivered("a message after the leave", [a1, a2, b1, b2], [m.id], group);
      expect(c1.messageIds(group)).not.toContain(m.id);
      // Bob reads the group: zero unread; he still counts alice's last message until then.
      await expectUnread(BOB, group, unreadBeforeLeave + 1, "one more from alice");
      await client(BOB).markRead({ channelId: group, upToId: m.id });
      await expectUnread(BOB, group, 0, "after reading the group");
    });

    it("b2's Sync from its first cursor has the messages, the deletes, the read receipts and the membership changes, never typing", async () => {
      const res = await syncAll(client(BOB, "grpc"), "b2", b2CursorAfterFirstSync);
      const firstSyncEnd = sent.findIndex((s) => s.text === "d-alice-after-b2");
      const expected = sent.slice(firstSyncEnd).map((s) => s.id);
      const messages = res.events.filter((e) => e.event.case === "message").map((e) => (e.event.value as { messageId: bigint }).messageId);
      // Deleted messages come back as tombstones or only as delete events; either way the live
      // messages sent since the first Sync are all there, once, in order.
      expect(messages.filter((id) => expected.includes(id))).toEqual(expected);
      const deleted = res.events.flatMap((e) => (e.event.case === "deleted" ? [e.event.value.messageId] : []));
      expect(deleted).toHaveLength(2);
      const changes = res.events.flatMap((e) => (e.event.case === "memberChange" ? [e.event.value.kind] : []));
      expect(changes).toEqual(expect.arrayContaining([MemberChangeKind.ADDED, MemberChangeKind.REMOVED, MemberChangeKind.LEFT]));
      const receipts = res.events.flatMap((e) => (e.event.case === "receipt" ? [e.event.value] : []));
      expect(receipts.some((r) => r.kind === ReceiptKind.READ && r.userId === BOB)).toBe(true);
      expect(res.events.some((e) => e.event.case === "typing" || e.event.case === "keepAlive")).toBe(false);
      const ids = res.events.map((e) => e.eventId);
      expect([...ids].sort(cmp)).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
    });

    it("Session over gRPC h2c: open -> opened, send -> send_ack, events interleaved", async () => {
      const frames = new FrameQueue<SessionRequest>();
      const got: SessionResponse[] = [];
      const abort = new AbortController();
      const done = (async () => {
        try {
          for await (const f of client(ALICE, "grpc").session(frames, { signal: abort.signal })) got.push(f);
        } catch (e) {
          return ConnectError.from(e);
        }
        return undefined;
      })();
      frames.push(create(SessionRequestSchema, { frame: { case: "open", value: { deviceId: "a3" } } }));
      await waitFor("the opened frame", async () => (got.length > 0 ? true : undefined), LIVE_WAIT_MS);
      expect(got[0]!.frame.case).toBe("opened");
      const opened = got[0]!.frame.value as { keepAliveInterval?: { seconds: bigint } };
      expect(Number(opened.keepAliveInterval?.seconds ?? 0n)).toBeGreaterThan(0);

      frames.push(create(SessionRequestSchema, { frame: { case: "send", value: { channelId: direct, clientMessageId: `session-${run}`, text: "over a session" } } }));
      const ack = await waitFor("the send_ack", async () => got.find((f) => f.frame.case === "sendAck"), LIVE_WAIT_MS);
      const sendAck = ack.frame.value as { clientMessageId: string; result: { case: string; value: { message?: { messageId: bigint } } } };
      expect(sendAck.clientMessageId).toBe(`session-${run}`);
      expect(sendAck.result.case).toBe("sent");
      const sessionId = sendAck.result.value.message!.messageId;
      sent.push({ id: sessionId, channelId: direct, senderId: ALICE, text: "over a session" });
      await waitDelivered("the session's message", [b1, b2, a1, a2], [sessionId], direct);

      // Bob answers: the session receives it as an event, interleaved with its own frames.
      const reply = await send(BOB, direct, "d-bob-to-session", "connect-json-1.1");
      await waitFor("bob's reply on the session", async () =>
        got.some((f) => f.frame.case === "events" && f.frame.value.events.some((e) => e.event.case === "message" && e.event.value.messageId === reply.id)) ? true : undefined,
      LIVE_WAIT_MS);
      // A failed send does not end the session: it is reported in its send_ack.
      frames.push(create(SessionRequestSchema, { frame: { case: "send", value: { channelId: direct, clientMessageId: `session-empty-${run}`, text: "" } } }));
      const failed = await waitFor("the failed send_ack", async () =>
        got.find((f) => f.frame.case === "sendAck" && f.frame.value.clientMessageId === `session-empty-${run}`),
      LIVE_WAIT_MS);
      expect((failed.frame.value as { result: { case: string; value: { code: number } } }).result.case).toBe("error");
      expect((failed.frame.value as { result: { value: { code: number } } }).result.value.code).toBe(3);
      frames.push(create(SessionRequestSchema, { frame: { case: "typing", value: { channelId: direct, active: true } } }));
      await waitFor("the session's typing at b1", async () => (b1.of("typing").some((t) => t.userId === ALICE && t.channelId === direct) ? true : undefined), LIVE_WAIT_MS);
      // The session stayed open through all of it; the client hangs up.
      expect(got.filter((f) => f.frame.case === "opened")).toHaveLength(1);
      frames.end();
      abort.abort();
      await done;
    });

    it("no device ever got a message twice, and nothing was delivered out of id order", async () => {
      for (const d of devices.filter((x) => x.events.length > 0)) {
        const ids = d.messageIds();
        const counts = new Map<bigint, number>();
        for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
        expect([...counts.entries()].filter(([, n]) => n !== 1), `${d} duplicates`).toEqual([]);
        for (const ch of [direct, group]) {
          const per = d.messageIds(ch);
          expect([...per].sort(cmp), `${d} order in ${ch}`).toEqual(per);
        }
        expect(d.end, `${d} still open`).toBeUndefined();
      }
      for (const d of devices) d.stop();
    });
  });
}

const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** An async iterable of frames pushed by the test (the client half of a bidi stream). */
class FrameQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private ended = false;

  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }
}
