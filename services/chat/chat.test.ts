/** The chat use cases on the memory store: happy paths, refusals (kind + message), unread counts. */
import { describe, expect, it } from "vitest";
import { MemberChangeKind, ReceiptKind, type ChatEvent } from "../../gen/switchboard/chat/v1/chat_pb.js";
import { DomainError, type ErrorKind } from "../../platform/errors.js";
import type { LiveStream } from "./ports.js";
import { interceptedStore, testServer, testWorld } from "./test-fixtures.js";

async function refused(p: Promise<unknown>, kind: ErrorKind, message: RegExp): Promise<DomainError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e, "expected a refusal").toBeInstanceOf(DomainError);
  expect((e as DomainError).kind).toBe(kind);
  expect((e as DomainError).message).toMatch(message);
  return e as DomainError;
}

/** A fake device that records what delivery pushes to it. */
function device(userId: string, deviceId = "phone"): LiveStream & { got: ChatEvent[] } {
  const got: ChatEvent[] = [];
  return { userId, deviceId, got, push: (e) => got.push(e) };
}

describe("direct channels", () => {
  it("one channel per pair, idempotent from either side; CREATED reaches both", async () => {
    const { chat, delivery } = testWorld();
    const a = device("alice");
    const b = device("bob");
    delivery.attach(a);
    delivery.attach(b);
    const first = await chat.createDirect("alice", "bob");
    const again = await chat.createDirect("bob", "alice");
    expect(first.created).toBe(true);
    expect(again.created).toBe(false);
    expect(again.channel.id).toBe(first.channel.id);
    expect(first.channel.id).toMatch(/^d[A-Za-z0-9_-]{32}$/);
    expect(first.channel.members.map((m) => m.userId).sort()).toEqual(["alice", "bob"]);
    for (const d of [a, b]) {
      expect(d.got).toHaveLength(1);
      expect(d.got[0]!.event.case).toBe("memberChange");
      expect((d.got[0]!.event.value as { kind: MemberChangeKind }).kind).toBe(MemberChangeKind.CREATED);
      expect(d.got[0]!.cursor).not.toBe("");
    }
  });

  it("refuses yourself and malformed peers", async () => {
    const { chat } = testWorld();
    await refused(chat.createDirect("alice", "alice"), "InvalidArgument", /peer_user_id: is yourself/);
    await refused(chat.createDirect("alice", ""), "InvalidArgument", /peer_user_id: is required/);
    await refused(chat.createDirect("alice", "bob smith"), "InvalidArgument", /peer_user_id: is not a user id/);
  });

  it("a direct channel cannot be left or grown", async () => {
    const { chat } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    await refused(chat.leave("alice", channel.id), "FailedPrecondition", /direct channel/);
    await refused(chat.addMembers("alice", channel.id, ["carol"]), "FailedPrecondition", /direct channel/);
    await refused(chat.removeMember("alice", channel.id, "bob"), "FailedPrecondition", /direct channel/);
  });

  it("maxChannelsPerUser bounds new channels", async () => {
    const { chat } = testWorld({ maxChannelsPerUser: 2 });
    await chat.createDirect("alice", "bob");
    await chat.createDirect("alice", "carol");
    await refused(chat.createDirect("alice", "dave"), "FailedPrecondition", /alice is already in 2 channels/);
    await refused(chat.createGroup("alice", "g", [], ""), "FailedPrecondition", /at most 2/);
  });
});

describe("groups", () => {
  it("creator is owner; members deduped, own id ignored; request_id makes a retry return the same group", async () => {
    const { chat } = testWorld();
    const g = await chat.createGroup("alice", "friends", ["bob", "carol", "bob", "alice"], "req-1");
    expect(g.type).toBe("group");
    expect(g.members.map((m) => [m.userId, m.role])).toEqual([
      ["alice", "owner"],
      ["bob", "member"],
      ["carol", "member"],
    ]);
    const again = await chat.createGroup("alice", "friends", ["carol", "bob"], "req-1");
    expect(again.id).toBe(g.id);
    await refused(chat.createGroup("alice", "other name", ["bob"], "req-1"), "FailedPrecondition", /request_id: was already used/);
    const other = await chat.createGroup("alice", "friends", ["bob"], "");
    expect(other.id).not.toBe(g.id);
  });

  it("validates name, members, cap and request_id", async () => {
    const { chat } = testWorld({ maxGroupMembers: 3 });
    await refused(chat.createGroup("alice", "", [], ""), "InvalidArgument", /name: is required/);
    await refused(chat.createGroup("alice", "x".repeat(101), [], ""), "InvalidArgument", /name: is longer than 100/);
    await refused(chat.createGroup("alice", "a\u0007b", [], ""), "InvalidArgument", /name: must not contain control/);
    await refused(chat.createGroup("alice", "g", ["b", "c", "d"], ""), "InvalidArgument", /member_user_ids: a group has at most 3 members/);
    await refused(chat.createGroup("alice", "g", ["ok", " bad"], ""), "InvalidArgument", /member_user_ids\[1\]: is not a user id/);
    await refused(chat.createGroup("alice", "g", [], "r".repeat(129)), "InvalidArgument", /request_id/);
  });

  it("add: owner/admin only, existing members ignored, yourself refused, over the cap FAILED_PRECONDITION", async () => {
    const { chat, store } = testWorld({ maxGroupMembers: 4 });
    const g = await chat.createGroup("alice", "g", ["bob"], "");
    await refused(chat.addMembers("bob", g.id, ["carol"]), "PermissionDenied", /owner or an admin/);
    await refused(chat.addMembers("alice", g.id, ["alice"]), "InvalidArgument", /user_ids: contains yourself/);
    await refused(chat.addMembers("alice", g.id, []), "InvalidArgument", /user_ids: is required/);
    await refused(chat.addMembers("mallory", g.id, ["carol"]), "NotFound", /not found/);
    const r = await chat.addMembers("alice", g.id, ["bob", "carol"]);
    expect(r.added).toEqual(["carol"]);
    expect(r.channel.members.map((m) => m.userId)).toEqual(["alice", "bob", "carol"]);
    const same = await chat.addMembers("alice", g.id, ["carol"]);
    expect(same.added).toEqual([]);
    const version = (await store.getChannel(g.id))!.version;
    await refused(chat.addMembers("alice", g.id, ["dave", "erin"]), "FailedPrecondition", /at most 4/);
    expect((await store.getChannel(g.id))!.version).toBe(version);
  });

  it("remove: admins cannot remove the owner, plain members cannot remove, removing a non-member succeeds; the removed user gets the event", async () => {
    const { chat, store, delivery } = testWorld();
    const g = await chat.createGroup("alice", "g", ["bob", "carol"], "");
    const carol = device("carol");
    delivery.attach(carol);
    await refused(chat.removeMember("bob", g.id, "carol"), "PermissionDenied", /owner or an admin/);
    await refused(chat.removeMember("alice", g.id, "alice"), "InvalidArgument", /user_id: is yourself/);
    await chat.removeMember("alice", g.id, "nobody");
    await chat.removeMember("alice", g.id, "carol");
    expect(carol.got.map((e) => (e.event.value as { kind?: MemberChangeKind }).kind)).toEqual([MemberChangeKind.REMOVED]);
    expect((await store.getChannel(g.id))!.members.map((m) => m.userId)).toEqual(["alice", "bob"]);
    await refused(chat.getChannel("carol", g.id), "NotFound", /not found/);
  });

  it("owner leaving hands over to the longest-standing member in the LEFT event; the last one leaving leaves it empty", async () => {
    const { chat, store, delivery } = testWorld();
    const g = await chat.createGroup("alice", "g", ["bob"], "");
    await chat.addMembers("alice", g.id, ["carol"]);
    const bob = device("bob");
    delivery.attach(bob);
    await chat.leave("alice", g.id);
    const ev = bob.got.at(-1)!.event.value as { kind: MemberChangeKind; userIds: string[]; channel: { members: { userId: string; role: number }[] } };
    expect(ev.kind).toBe(MemberChangeKind.LEFT);
    expect(ev.userIds).toEqual(["alice"]);
    expect(ev.channel.members.map((m) => [m.userId, m.role])).toEqual([
      ["bob", 1],
      ["carol", 3],
    ]);
    expect((await store.getChannel(g.id))!.members.find((m) => m.userId === "bob")!.role).toBe("owner");
    await chat.leave("alice", g.id); // a retried leave succeeds
    await chat.leave("bob", g.id);
    await chat.leave("carol", g.id);
    expect((await store.getChannel(g.id))!.members).toEqual([]);
    await refused(chat.leave("zed", g.id), "NotFound", /not found/);
  });

  it("a concurrent change is retried on a fresh read (cap re-checked)", async () => {
    const { chat } = testWorld({ maxGroupMembers: 3 });
    const g = await chat.createGroup("alice", "g", ["bob"], "");
    const results = await Promise.allSettled([chat.addMembers("alice", g.id, ["carol"]), chat.addMembers("alice", g.id, ["dave"])]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const rejected = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect((rejected.reason as DomainError).kind).toBe("FailedPrecondition");
  });
});

describe("membership conflicts", () => {
  it("a change that keeps losing the compare-and-set answers ABORTED after a few fresh attempts", async () => {
    const { chat, store } = testWorld();
    const g = await chat.createGroup("alice", "g", ["bob"], "");
    let attempts = 0;
    store.changeMembership = async () => {
      attempts++;
      return "conflict";
    };
    await refused(chat.addMembers("alice", g.id, ["carol"]), "Aborted", /changed concurrently/);
    expect(attempts).toBe(5);
  });
});

describe("messages", () => {
  it("send is idempotent by client_message_id, delivered to every member's devices, readable in history", async () => {
    const { chat, delivery } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    const devs = [device("alice", "phone"), device("alice", "laptop"), device("bob", "phone")];
    for (const d of devs) delivery.attach(d);
    const r = await chat.send("alice", channel.id, "c-1", "hi 👋");
    expect(r.duplicate).toBe(false);
    const again = await chat.send("alice", channel.id, "c-1", "hi 👋");
    expect(again).toMatchObject({ duplicate: true, message: { id: r.message.id } });
    for (const d of devs) expect(d.got.filter((e) => e.event.case === "message").map((e) => e.eventId)).toEqual([r.message.id]);
    const h = await chat.history("bob", channel.id, { newest: true }, 0);
    expect(h.messages.map((m) => m.text)).toEqual(["hi 👋"]);
  });

  it("refuses non-members, bad text and bad client ids, storing nothing", async () => {
    const { chat, store } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    await refused(chat.send("mallory", channel.id, "c", "x"), "NotFound", /channel .* not found/);
    await refused(chat.send("alice", "nope", "c", "x"), "NotFound", /not found/);
    await refused(chat.send("alice", "bad id!", "c", "x"), "InvalidArgument", /channel_id/);
    await refused(chat.send("alice", channel.id, "c", ""), "InvalidArgument", /text: is required/);
    await refused(chat.send("alice", channel.id, "c", "a".repeat(100_001)), "InvalidArgument", /text: is longer than 100,000/);
    await refused(chat.send("alice", channel.id, "", "x"), "InvalidArgument", /client_message_id: is required/);
    await refused(chat.send("alice", channel.id, "é", "x"), "InvalidArgument", /client_message_id/);
    await refused(chat.send("alice", channel.id, "x".repeat(65), "x"), "InvalidArgument", /client_message_id/);
    expect((await store.history(channel.id, { newest: true }, 10)).messages).toEqual([]);
  });

  it("text limit counts code points: 100,000 emoji fit", async () => {
    const { chat } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    await expect(chat.send("alice", channel.id, "emoji", "😀".repeat(100_000))).resolves.toMatchObject({ duplicate: false });
    await refused(chat.send("alice", channel.id, "emoji2", "😀".repeat(100_001)), "InvalidArgument", /text/);
  });

  it("minting unavailable -> Unavailable, nothing stored", async () => {
    const { chat, store } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    (chat as unknown as { ids: { next(): bigint } }).ids = {
      next: () => {
        throw new DomainError("Unavailable", "no worker id");
      },
    };
    await refused(chat.send("alice", channel.id, "c", "x"), "Unavailable", /ids cannot be issued/);
    expect((await store.history(channel.id, { newest: true }, 10)).messages).toEqual([]);
  });

  it("history pages before/after with has_more; bad page sizes and anchors refused", async () => {
    const { chat, clock } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    const ids: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      clock.advance(1);
      ids.push((await chat.send("alice", channel.id, `m${i}`, `t${i}`)).message.id);
    }
    const newest = await chat.history("alice", channel.id, { newest: true }, 2);
    expect(newest.messages.map((m) => m.id)).toEqual(ids.slice(3));
    expect(newest.hasMore).toBe(true);
    const older = await chat.history("alice", channel.id, { beforeId: ids[3]! }, 2);
    expect(older.messages.map((m) => m.id)).toEqual(ids.slice(1, 3));
    const after = await chat.history("alice", channel.id, { afterId: ids[2]! }, 10);
    expect(after).toMatchObject({ hasMore: false });
    expect(after.messages.map((m) => m.id)).toEqual(ids.slice(3));
    await refused(chat.history("alice", channel.id, { newest: true }, 201), "InvalidArgument", /page_size: must be between 1 and 200/);
    await refused(chat.history("alice", channel.id, { beforeId: 0n }, 0), "InvalidArgument", /before_id/);
    await refused(chat.history("carol", channel.id, { newest: true }, 0), "NotFound", /not found/);
  });

  it("history: a non-member learns nothing, whatever the page read (read alongside the membership check) did", async () => {
    const { clock, store: inner } = testWorld();
    let pageReads = 0;
    const store = interceptedStore(inner, {
      history: () => {
        pageReads += 1;
        throw new DomainError("Unavailable", "the page read failed");
      },
    });
    const { chat } = testServer({ store, clock });
    const { channel } = await chat.createDirect("alice", "bob");
    await chat.send("alice", channel.id, "m1", "secret");
    await refused(chat.history("carol", channel.id, { newest: true }, 10), "NotFound", /not found/);
    await refused(chat.history("carol", "ch_doesnotexist0000", { newest: true }, 10), "NotFound", /not found/);
    expect(pageReads).toBe(2);
    // A member sees the store's error.
    await refused(chat.history("bob", channel.id, { newest: true }, 10), "Unavailable", /page read failed/);
  });

  it("delete: sender or group owner/admin; tombstone; twice ok; others refused", async () => {
    const { chat, store, delivery } = testWorld();
    const g = await chat.createGroup("alice", "g", ["bob", "carol"], "");
    const m = await chat.send("bob", g.id, "b1", "secret");
    const c = await chat.send("carol", g.id, "c1", "carol's");
    const carol = device("carol");
    delivery.attach(carol);
    await refused(chat.deleteMessage("carol", g.id, m.message.id), "PermissionDenied", /only the sender/);
    await refused(chat.deleteMessage("carol", g.id, 12345n), "NotFound", /message 12345/);
    await refused(chat.deleteMessage("zed", g.id, m.message.id), "NotFound", /channel/);
    await refused(chat.deleteMessage("carol", g.id, 0n), "InvalidArgument", /message_id/);
    await chat.deleteMessage("alice", g.id, m.message.id);
    await chat.deleteMessage("bob", g.id, m.message.id);
    await chat.deleteMessage("carol", g.id, c.message.id);
    expect(await store.getMessage(g.id, m.message.id)).toMatchObject({ deleted: true, text: "" });
    expect(carol.got.filter((e) => e.event.case === "deleted")).toHaveLength(2);
    const h = await chat.history("bob", g.id, { newest: true }, 0);
    expect(h.messages.map((x) => [x.deleted, x.text])).toEqual([
      [true, ""],
      [true, ""],
    ]);
  });
});

describe("receipts, unread counts and typing", () => {
  it("unread counts are exact after reads, deletes and leaves; read receipts go live", async () => {
    const { chat, delivery } = testWorld();
    const g = await chat.createGroup("alice", "g", ["bob"], "");
    const ids: bigint[] = [];
    for (let i = 0; i < 4; i++) ids.push((await chat.send("alice", g.id, `a${i}`, `t${i}`)).message.id);
    await chat.send("bob", g.id, "own", "bob's own message does not count");
    const unread = async () => (await chat.listMine("bob", 0, "")).channels.find((c) => c.channel.id === g.id)?.unreadCount;
    expect(await unread()).toBe(4);
    const alice = device("alice");
    delivery.attach(alice);
    expect(await chat.markRead("bob", g.id, ids[1]!)).toBe(ids[1]);
    expect(await unread()).toBe(2);
    expect(alice.got.map((e) => e.event.case === "receipt" && e.event.value.kind)).toEqual([ReceiptKind.READ]);
    expect(await chat.markRead("bob", g.id, ids[0]!)).toBe(ids[1]); // monotonic, no new receipt
    expect(alice.got).toHaveLength(1);
    await chat.deleteMessage("alice", g.id, ids[3]!);
    expect(await unread()).toBe(1);
    await chat.leave("bob", g.id);
    expect(await unread()).toBeUndefined();
    const got = await chat.getChannel("alice", g.id);
    expect(got.readUpToId).toBe(0n);
  });

  it("receipts refuse 0, ids from the future, non-members and bad devices", async () => {
    const { chat, delivery } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    const m = await chat.send("alice", channel.id, "c", "x");
    await refused(chat.markRead("bob", channel.id, 0n), "InvalidArgument", /up_to_id: is required/);
    await refused(chat.markRead("bob", channel.id, m.message.id + 1n), "InvalidArgument", /up_to_id: is after the newest message/);
    await refused(chat.markRead("carol", channel.id, m.message.id), "NotFound", /not found/);
    await refused(chat.markDelivered("bob", "bad device!", channel.id, m.message.id), "InvalidArgument", /device_id/);
    await refused(chat.markDelivered("bob", "", channel.id, m.message.id), "InvalidArgument", /device_id: is required/);
    const alice = device("alice");
    delivery.attach(alice);
    expect(await chat.markDelivered("bob", "phone", channel.id, m.message.id)).toBe(m.message.id);
    const r = alice.got.find((e) => e.event.case === "receipt")!;
    expect(r.eventId).toBe(0n);
    expect(r.event.value).toMatchObject({ kind: ReceiptKind.DELIVERED, deviceId: "phone", userId: "bob", upToId: m.message.id });
  });

  it("typing: live to the others only, never stored, rate limited with a retry hint", async () => {
    const { chat, delivery, store, clock } = testWorld({ typingPerWindow: 2, typingWindowMs: 1_000 });
    const { channel } = await chat.createDirect("alice", "bob");
    const a = device("alice");
    const b = device("bob");
    delivery.attach(a);
    delivery.attach(b);
    const before = (await store.getChannel(channel.id))!.lastEventId;
    await chat.sendTyping("alice", channel.id, true);
    await chat.sendTyping("alice", channel.id, false);
    const e = await refused(chat.sendTyping("alice", channel.id, true), "ResourceExhausted", /typing indicators are limited to 2 per 1000 ms/);
    expect(e.details.retryAfterMs).toBeGreaterThan(0);
    expect(b.got.map((x) => x.event.case)).toEqual(["typing", "typing"]);
    expect(a.got.filter((x) => x.event.case === "typing")).toEqual([]);
    expect((await store.getChannel(channel.id))!.lastEventId).toBe(before);
    clock.advance(1_001);
    await chat.sendTyping("alice", channel.id, true);
    await refused(chat.sendTyping("carol", channel.id, true), "NotFound", /not found/);
  });
});

describe("list and sync basics", () => {
  it("lists newest activity first, paged with an opaque token bound to the caller", async () => {
    const { chat, clock } = testWorld();
    const c1 = (await chat.createDirect("alice", "bob")).channel;
    clock.advance(1);
    const c2 = (await chat.createDirect("alice", "carol")).channel;
    clock.advance(1);
    await chat.send("alice", c1.id, "x", "bump c1");
    const p1 = await chat.listMine("alice", 1, "");
    expect(p1.channels.map((c) => c.channel.id)).toEqual([c1.id]);
    clock.advance(1);
    await chat.markRead("carol", c2.id, (await chat.send("alice", c2.id, "y", "bump c2")).message.id);
    clock.advance(1);
    await chat.send("alice", c1.id, "z", "bump c1 again");
    clock.advance(1);
    await chat.markRead("carol", c2.id, (await chat.history("carol", c2.id, { newest: true }, 1)).messages[0]!.id);
    await chat.markRead("bob", c1.id, (await chat.history("bob", c1.id, { newest: true }, 1)).messages[0]!.id);
    // Reading is not activity: c1 has the newest message.
    expect((await chat.listMine("alice", 0, "")).channels.map((c) => c.channel.id)).toEqual([c1.id, c2.id]);
    const p2 = await chat.listMine("alice", 1, p1.nextPageToken);
    expect(p2.channels.map((c) => c.channel.id)).toEqual([c2.id]);
    expect(p2.nextPageToken).toBe("");
    await refused(chat.listMine("bob", 1, p1.nextPageToken), "InvalidArgument", /page_token/);
    await refused(chat.listMine("alice", 1, "!!"), "InvalidArgument", /page_token/);
    await refused(chat.listMine("alice", 101, ""), "InvalidArgument", /page_size/);
  });

  it("empty cursor starts now; malformed cursors, bad devices and page sizes are refused", async () => {
    const { chat } = testWorld();
    await chat.createDirect("alice", "bob");
    const r = await chat.sync("alice", "phone", "", 0);
    expect(r).toMatchObject({ events: [], hasMore: false, reset: false });
    expect(r.nextCursor).toMatch(/^[A-Za-z0-9_-]+$/);
    await refused(chat.sync("alice", "phone", "garbage!", 0), "InvalidArgument", /cursor: is not a Sync cursor/);
    await refused(chat.sync("alice", "phone", "AAAA", 0), "InvalidArgument", /cursor/);
    await refused(chat.sync("alice", "phone", r.nextCursor, 501), "InvalidArgument", /page_size/);
    await refused(chat.sync("alice", "", r.nextCursor, 0), "InvalidArgument", /device_id/);
  });

  it("a cursor older than the retention window answers reset", async () => {
    const { chat, clock } = testWorld({ retentionDays: 1 });
    const start = await chat.sync("alice", "phone", "", 0);
    clock.advance(2 * 86_400_000);
    const r = await chat.sync("alice", "phone", start.nextCursor, 0);
    expect(r).toMatchObject({ events: [], reset: true });
  });

  it("Sync returns messages, deletes, receipts and membership changes, not typing; a removed user syncs up to their removal", async () => {
    const { chat, clock } = testWorld();
    const startBob = (await chat.sync("bob", "phone", "", 0)).nextCursor;
    const g = await chat.createGroup("alice", "g", ["bob", "carol"], "");
    const m = await chat.send("alice", g.id, "1", "hello");
    await chat.sendTyping("alice", g.id, true);
    await chat.markRead("carol", g.id, m.message.id);
    await chat.deleteMessage("alice", g.id, m.message.id);
    await chat.removeMember("alice", g.id, "bob");
    clock.advance(1);
    await chat.send("alice", g.id, "2", "after bob left");
    clock.advance(10_000);
    const r = await chat.sync("bob", "phone", startBob, 0);
    expect(r.events.map((e) => e.event.case)).toEqual(["memberChange", "message", "receipt", "deleted", "memberChange"]);
    expect(r.hasMore).toBe(false);
    const paged: string[] = [];
    let cursor = startBob;
    for (;;) {
      const p = await chat.sync("bob", "phone", cursor, 2);
      paged.push(...p.events.map((e) => e.event.case ?? ""));
      cursor = p.nextCursor;
      if (!p.hasMore) break;
    }
    expect(paged).toEqual(["memberChange", "message", "receipt", "deleted", "memberChange"]);
  });
});
