/**
 * ChatService handlers over the real live layer (LocalDelivery + DeviceStream): the multi-device
 * scenario of issue 9, Subscribe replacement, and Session frame handling.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { Code, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  SessionRequestSchema,
  SessionResponseSchema,
  type ChatEvent,
  type ChatService,
  type SessionRequest,
  type SessionResponse,
} from "../../gen/switchboard/chat/v1/chat_pb.js";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Channel, ListMyChannelsResponse, SendMessageResponse, SyncResponse } from "../../gen/switchboard/chat/v1/chat_pb.js";
import { DomainError } from "../../platform/errors.js";
import { Serialized } from "../../platform/grpc/service-definition.js";
import { identityKey } from "../../platform/identity.js";
import { MAX_STREAMS_PER_USER, chatImpl } from "./module.js";
import { MemoryChatStore } from "./adapters/memory-chat-store.js";
import { TestClock, interceptedStore, testServer, testWorld } from "./test-fixtures.js";

type Impl = ServiceImpl<typeof ChatService>;

function ctxOf(userId: string | undefined, signal = new AbortController().signal): HandlerContext {
  const values = createContextValues();
  if (userId) values.set(identityKey, { userId, kind: "user" });
  return { values, signal } as unknown as HandlerContext;
}

const settle = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

function world() {
  const w = testWorld();
  const impl = chatImpl(w.chat, w.delivery, { serverId: "test-server" }) as Impl;
  return { ...w, impl };
}

/** A subscribed device: collects its live events until stopped. */
function subscribe(impl: Impl, userId: string, deviceId: string) {
  const ac = new AbortController();
  const got: ChatEvent[] = [];
  let error: unknown;
  const done = (async () => {
    try {
      for await (const r of impl.subscribe({ deviceId } as never, ctxOf(userId, ac.signal)) as AsyncIterable<{ events: ChatEvent[] }>) {
        for (const ev of r.events) if (ev.event.case !== "keepAlive") got.push(ev);
      }
    } catch (e) {
      error = e;
    }
  })();
  return { userId, deviceId, got, stop: () => ac.abort(), done, error: () => error };
}

const messageIdsOf = (events: readonly ChatEvent[]) =>
  events.filter((e) => e.event.case === "message").map((e) => (e.event.value as { messageId: bigint }).messageId);

describe("two users with two devices each, a direct channel and a group of three", () => {
  it("every message reaches every subscribed device of every member once; an offline device Syncs exactly what it missed", async () => {
    const { impl, clock } = world();
    const devices = [
      subscribe(impl, "alice", "phone"),
      subscribe(impl, "alice", "laptop"),
      subscribe(impl, "bob", "phone"),
      subscribe(impl, "bob", "laptop"),
      subscribe(impl, "carol", "phone"),
    ];
    await settle();
    const direct = ((await impl.createDirectChannel({ peerUserId: "bob" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    const group = ((await impl.createGroupChannel({ name: "three", memberUserIds: ["bob", "carol"], requestId: "" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    const sent: { channel: string; id: bigint }[] = [];
    const send = async (user: string, channel: string, text: string) => {
      clock.advance(5);
      const r = (await impl.sendMessage({ channelId: channel, clientMessageId: `${user}-${sent.length}`, text } as never, ctxOf(user))) as SendMessageResponse;
      sent.push({ channel, id: r.message!.messageId });
    };
    await send("alice", direct.channelId, "hi bob");
    await send("bob", direct.channelId, "hi alice");
    await send("carol", group.channelId, "hi all");
    await send("alice", group.channelId, "hello group");
    await settle();
    for (const d of devices) {
      const expected = sent.filter((s) => s.channel === group.channelId || d.userId !== "carol").map((s) => s.id);
      expect(messageIdsOf(d.got), `${d.userId}/${d.deviceId}`).toEqual(expected);
      expect(d.got.every((e) => e.eventId > 0n && e.cursor !== "")).toBe(true);
    }

    // Bob's laptop goes offline, keeping the cursor of the last event it saw.
    const laptop = devices[3]!;
    const cursor = laptop.got.at(-1)!.cursor;
    laptop.stop();
    await laptop.done;
    const before = sent.length;
    await send("alice", direct.channelId, "while you were away");
    await send("carol", group.channelId, "group while away");
    await impl.deleteMessage({ channelId: group.channelId, messageId: sent[2]!.id } as never, ctxOf("carol"));
    await settle();
    const missed = sent.slice(before).map((s) => s.id);
    expect(messageIdsOf(devices[2]!.got).slice(-2)).toEqual(missed);
    expect(messageIdsOf(laptop.got)).not.toContain(missed[0]);

    clock.advance(10_000);
    const synced: ChatEvent[] = [];
    let next = cursor;
    for (;;) {
      const r: SyncResponse = await (impl.sync as (...a: unknown[]) => Promise<SyncResponse>)({ deviceId: "laptop", cursor: next, pageSize: 2 } as never, ctxOf("bob"));
      synced.push(...r.events);
      next = r.nextCursor;
      if (!r.hasMore) break;
    }
    const known = new Set(laptop.got.map((e) => e.eventId));
    const fresh = synced.filter((e) => !known.has(e.eventId));
    expect(messageIdsOf(fresh)).toEqual(missed);
    expect(fresh.map((e) => e.event.case)).toEqual(["message", "message", "deleted"]);
    for (const d of devices) d.stop();
    await Promise.all(devices.map((d) => d.done));
  });

  it("receipts reach the sender live; unread counts are right", async () => {
    const { impl } = world();
    const direct = ((await impl.createDirectChannel({ peerUserId: "bob" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    const m = (await impl.sendMessage({ channelId: direct.channelId, clientMessageId: "1", text: "read me" } as never, ctxOf("alice"))) as SendMessageResponse;
    await impl.sendMessage({ channelId: direct.channelId, clientMessageId: "2", text: "and me" } as never, ctxOf("alice"));
    const alice = subscribe(impl, "alice", "phone");
    await settle();
    const list = (await impl.listMyChannels({ pageSize: 0, pageToken: "" } as never, ctxOf("bob"))) as ListMyChannelsResponse;
    expect(list.channels.map((c) => c.unreadCount)).toEqual([2]);
    await impl.markDelivered({ deviceId: "phone", channelId: direct.channelId, upToId: m.message!.messageId } as never, ctxOf("bob"));
    await impl.markRead({ channelId: direct.channelId, upToId: m.message!.messageId } as never, ctxOf("bob"));
    await settle();
    expect(alice.got.filter((e) => e.event.case === "receipt").map((e) => (e.event.value as { kind: number }).kind)).toEqual([1, 2]);
    const after = (await impl.listMyChannels({ pageSize: 0, pageToken: "" } as never, ctxOf("bob"))) as ListMyChannelsResponse;
    expect(after.channels.map((c) => [c.unreadCount, c.readUpToId])).toEqual([[1, m.message!.messageId]]);
    alice.stop();
    await alice.done;
  });
});

describe("Subscribe", () => {
  it("needs a caller and a valid device id; a newer stream of the same device ends the older with ABORTED", async () => {
    const { impl, delivery } = world();
    await expect((async () => {
      for await (const _ of impl.subscribe({ deviceId: "phone" } as never, ctxOf(undefined)) as AsyncIterable<unknown>) void _;
    })()).rejects.toMatchObject({ kind: "Unauthenticated" });
    await expect((async () => {
      for await (const _ of impl.subscribe({ deviceId: "bad device" } as never, ctxOf("alice")) as AsyncIterable<unknown>) void _;
    })()).rejects.toMatchObject({ kind: "InvalidArgument", message: /device_id/ });
    const first = subscribe(impl, "alice", "phone");
    await settle();
    const second = subscribe(impl, "alice", "phone");
    await first.done;
    expect(first.error()).toBeInstanceOf(DomainError);
    expect(first.error()).toMatchObject({ kind: "Aborted" });
    expect(delivery.size()).toBe(1);
    second.stop();
    await second.done;
    expect(delivery.size()).toBe(0);
  });
});

describe("stream cap", () => {
  it("one user holds at most MAX_STREAMS_PER_USER live devices; a replaced or ended stream frees its slot", async () => {
    const { impl } = world();
    const subs = Array.from({ length: MAX_STREAMS_PER_USER }, (_, i) => subscribe(impl, "alice", `d${i}`));
    await settle();
    const extra = subscribe(impl, "alice", "one-too-many");
    await extra.done;
    expect(extra.error()).toMatchObject({ kind: "ResourceExhausted", message: /at most 32 devices/ });
    const again = subscribe(impl, "alice", "d0"); // replaces d0: still 32
    await subs[0]!.done;
    await settle();
    const other = subscribe(impl, "bob", "phone");
    subs[1]!.stop();
    await subs[1]!.done;
    const fits = subscribe(impl, "alice", "new");
    await settle();
    expect(fits.error()).toBeUndefined();
    for (const s of [...subs, again, other, fits]) s.stop();
    await Promise.all([...subs, again, other, fits].map((s) => s.done));
  });
});

/** A client's side of a Session: frames pushed by the test, closed on demand. */
function clientFrames() {
  const queue: SessionRequest[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  const iterable: AsyncIterable<SessionRequest> = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const f = queue.shift();
        if (f) {
          yield f;
          continue;
        }
        if (closed) return;
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
  return {
    iterable,
    send(frame: SessionRequest["frame"]) {
      queue.push(create(SessionRequestSchema, { frame }));
      wake?.();
    },
    close() {
      closed = true;
      wake?.();
    },
  };
}

/** The Session's output as responses: `events` frames come serialized (for grpc-js to write as they are). */
async function* sessionResponses(impl: Impl, frames: AsyncIterable<SessionRequest>, ctx: HandlerContext): AsyncGenerator<SessionResponse> {
  for await (const f of impl.session(frames, ctx) as AsyncIterable<SessionResponse | Serialized>) {
    yield f instanceof Serialized ? fromBinary(SessionResponseSchema, f.bytes) : f;
  }
}

function runSession(impl: Impl, userId: string, frames: AsyncIterable<SessionRequest>) {
  const out: SessionResponse[] = [];
  let error: unknown;
  const done = (async () => {
    try {
      for await (const f of sessionResponses(impl, frames, ctxOf(userId))) out.push(f);
    } catch (e) {
      error = e;
    }
  })();
  return { out, done, error: () => error };
}

describe("Session", () => {
  it("a consumer that stops early (client gone) releases the device stream", async () => {
    const { impl, delivery } = world();
    const direct = ((await impl.createDirectChannel({ peerUserId: "bob" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    const c = clientFrames();
    c.send({ case: "open", value: { deviceId: "phone" } as never });
    const it = sessionResponses(impl, c.iterable, ctxOf("alice"));
    expect((await it.next()).value.frame.case).toBe("opened");
    for (let i = 0; i < 5; i++) await impl.sendMessage({ channelId: direct.channelId, clientMessageId: `b${i}`, text: "x" } as never, ctxOf("bob"));
    await settle();
    expect((await it.next()).value.frame.case).toBe("events");
    expect(delivery.size()).toBe(1);
    await it.return?.(undefined);
    expect(delivery.size()).toBe(0);
  }, 5_000); // a hang here (the event pump waiting for room forever) used to last until the next keep-alive

  it("the first frame must be open", async () => {
    const { impl } = world();
    const c = clientFrames();
    c.send({ case: "typing", value: { channelId: "x", active: true } as never });
    const s = runSession(impl, "alice", c.iterable);
    await s.done;
    expect(s.error()).toMatchObject({ kind: "InvalidArgument", message: /first Session frame must be `open`/ });
    expect(s.out).toEqual([]);
  });

  it("opened first; send_acks interleave with live events; a failed send is reported and the session stays open; a second open ends it", async () => {
    const { impl } = world();
    const direct = ((await impl.createDirectChannel({ peerUserId: "bob" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    const c = clientFrames();
    c.send({ case: "open", value: { deviceId: "phone" } as never });
    const s = runSession(impl, "alice", c.iterable);
    await settle();
    expect(s.out[0]!.frame.case).toBe("opened");
    expect(s.out[0]!.frame.value).toMatchObject({ serverId: "test-server", keepAliveInterval: { seconds: 25n } });

    const kinds = (f: SessionResponse): string[] => (f.frame.case === "events" ? f.frame.value.events.map((e) => `event:${e.event.case}`) : [String(f.frame.case)]);
    const step = async (act: () => unknown): Promise<string[]> => {
      const from = s.out.length;
      await act();
      await settle();
      return s.out.slice(from).flatMap(kinds).sort();
    };
    // The sender's own device gets its message as an event too (every device of every member).
    expect(await step(() => c.send({ case: "send", value: { channelId: direct.channelId, clientMessageId: "s1", text: "from the session" } as never }))).toEqual(["event:message", "sendAck"]);
    expect(await step(() => impl.sendMessage({ channelId: direct.channelId, clientMessageId: "b1", text: "from bob" } as never, ctxOf("bob")))).toEqual(["event:message"]);
    expect(await step(() => c.send({ case: "send", value: { channelId: direct.channelId, clientMessageId: "s2", text: "" } as never }))).toEqual(["sendAck"]);
    expect(await step(() => c.send({ case: "send", value: { channelId: direct.channelId, clientMessageId: "s3", text: "still open" } as never }))).toEqual(["event:message", "sendAck"]);
    const acks = s.out.filter((f) => f.frame.case === "sendAck").map((f) => f.frame.value as { clientMessageId: string; result: { case: string; value: { code?: number; message?: string } } });
    expect(acks.map((a) => [a.clientMessageId, a.result.case])).toEqual([
      ["s1", "sent"],
      ["s2", "error"],
      ["s3", "sent"],
    ]);
    expect(acks[1]!.result.value).toMatchObject({ code: Code.InvalidArgument, message: /text: is required/ });

    c.send({ case: "open", value: { deviceId: "phone" } as never });
    await s.done;
    expect(s.error()).toMatchObject({ kind: "InvalidArgument", message: /only the first/ });
  });

  it("ack, read and typing frames act; a typing flood is dropped without ending the session; closing the client side ends it", async () => {
    const { impl } = world();
    const direct = ((await impl.createDirectChannel({ peerUserId: "bob" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    const m = (await impl.sendMessage({ channelId: direct.channelId, clientMessageId: "a1", text: "hello" } as never, ctxOf("alice"))) as SendMessageResponse;
    const alice = subscribe(impl, "alice", "phone");
    const c = clientFrames();
    c.send({ case: "open", value: { deviceId: "tablet" } as never });
    const s = runSession(impl, "bob", c.iterable);
    await settle();
    c.send({ case: "ack", value: { deviceId: "", channelId: direct.channelId, upToId: m.message!.messageId } as never });
    c.send({ case: "read", value: { channelId: direct.channelId, upToId: m.message!.messageId } as never });
    for (let i = 0; i < 8; i++) c.send({ case: "typing", value: { channelId: direct.channelId, active: true } as never });
    await settle(60);
    const receipts = alice.got.filter((e) => e.event.case === "receipt").map((e) => e.event.value as { kind: number; deviceId: string });
    expect(receipts).toMatchObject([{ kind: 1, deviceId: "tablet" }, { kind: 2 }]);
    expect(alice.got.filter((e) => e.event.case === "typing")).toHaveLength(5);
    c.close();
    await s.done;
    expect(s.error()).toBeUndefined();
    alice.stop();
    await alice.done;
  });

  it("sends are pipelined: started in frame order (ids in that order), acked as each finishes; at most sessionInFlight at once, the rest wait unread", async () => {
    const clock = new TestClock();
    const held = new Map<string, () => void>();
    const store = interceptedStore(new MemoryChatStore(clock.now), {
      putMessage: (m: { clientMessageId: string }) => new Promise<void>((r) => held.set(m.clientMessageId, r)),
    });
    const { chat, delivery } = testServer({ store, clock, config: { sessionInFlight: 3 } });
    const impl = chatImpl(chat, delivery, { serverId: "test-server" }) as Impl;
    const direct = ((await impl.createDirectChannel({ peerUserId: "bob" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    const c = clientFrames();
    c.send({ case: "open", value: { deviceId: "phone" } as never });
    const s = runSession(impl, "alice", c.iterable);
    for (let i = 1; i <= 5; i++) c.send({ case: "send", value: { channelId: direct.channelId, clientMessageId: `p${i}`, text: `n${i}` } as never });
    await settle(60);
    // Three writes are under way together (in any order: a send that finds its channel's member
    // list kept gets to its write before one that waits for the list); the fourth frame is not
    // taken before one of them ends.
    expect([...held.keys()].sort()).toEqual(["p1", "p2", "p3"]);
    const acked = () =>
      s.out.filter((f) => f.frame.case === "sendAck").map((f) => f.frame.value as { clientMessageId: string; result: { value: { message: { messageId: bigint } } } });
    held.get("p3")!();
    await settle(60);
    expect(acked().map((a) => a.clientMessageId)).toEqual(["p3"]);
    expect([...held.keys()].sort()).toEqual(["p1", "p2", "p3", "p4"]);
    for (const k of ["p2", "p4", "p1"]) held.get(k)!();
    await settle(60);
    held.get("p5")!();
    await settle(60);
    expect(acked().map((a) => a.clientMessageId)).toEqual(["p3", "p2", "p4", "p1", "p5"]);
    // Ids follow the frames' order, whatever order the writes ended in.
    const idOf = new Map(acked().map((a) => [a.clientMessageId, a.result.value.message.messageId]));
    const ids = ["p1", "p2", "p3", "p4", "p5"].map((k) => idOf.get(k)!);
    expect([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(ids);
    c.close();
    await s.done;
    expect(s.error()).toBeUndefined();
  });

  it("a client that sends without reading its acks stops being read once sessionInFlight acks wait", async () => {
    const { chat, delivery } = testWorld({ sessionInFlight: 2 });
    const impl = chatImpl(chat, delivery, { serverId: "test-server" }) as Impl;
    const direct = ((await impl.createDirectChannel({ peerUserId: "bob" } as never, ctxOf("alice"))) as { channel: Channel }).channel;
    let taken = 0;
    const frames: AsyncIterable<SessionRequest> = {
      async *[Symbol.asyncIterator]() {
        yield create(SessionRequestSchema, { frame: { case: "open", value: { deviceId: "phone" } } });
        for (let i = 0; i < 50; i++) {
          taken++;
          yield create(SessionRequestSchema, { frame: { case: "send", value: { channelId: direct.channelId, clientMessageId: `u${i}`, text: "x" } } });
        }
      },
    };
    const it = sessionResponses(impl, frames, ctxOf("alice"));
    expect((await it.next()).value.frame.case).toBe("opened");
    // One more output frame is asked for, then nobody reads: a few frames are taken (acks and the
    // sender's own events queue up to the bound), then the request stream is left alone.
    expect((await it.next()).done).toBe(false);
    await settle(100);
    expect(taken).toBeGreaterThan(1);
    expect(taken).toBeLessThanOrEqual(8);
    const before = taken;
    await settle(100);
    expect(taken).toBe(before);
    await it.return?.(undefined);
  });
});
