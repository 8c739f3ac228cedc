import { create, fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ChatEventSchema,
  MessageSchema,
  RelayRequestSchema,
  SubscribeResponseSchema,
  type ChatEvent,
  type RelayFrame,
  type RelayResponse,
} from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { DomainError } from "../../../platform/errors.js";
import { meshKey, signIdentityAssertion } from "../../../platform/identity-assertion.js";
import { testMeshKey } from "../../../testkit/mesh-identity.js";
import { DeviceStream, MAX_BATCH_BYTES, replacedStream } from "./device-stream.js";
import { MAX_PENDING_REFUSALS, RelayCall, SUBSCRIBE_PATH, subscribeAssertionVerifier, type RelayHost } from "./relay.js";

const msg = (id: number, text = ""): ChatEvent =>
  create(ChatEventSchema, { eventId: BigInt(id), event: { case: "message", value: create(MessageSchema, { messageId: BigInt(id), text }) } });

const open = (streamId: number, deviceId: string, assertion: string) =>
  create(RelayRequestSchema, { streamId: BigInt(streamId), frame: { case: "open", value: { deviceId, identityAssertion: assertion } } });
const openEncoded = (streamId: number, deviceId: string, assertion: string) =>
  create(RelayRequestSchema, { streamId: BigInt(streamId), frame: { case: "open", value: { deviceId, identityAssertion: assertion, acceptEncoded: true } } });
const close = (streamId: number) => create(RelayRequestSchema, { streamId: BigInt(streamId), frame: { case: "close", value: {} } });

/** A host whose assertions are "user:<id>"; it records what it attached and detached. */
function host(outboxEvents = 8, refuse?: () => DomainError | undefined) {
  const streams = new Map<string, DeviceStream>();
  const closed: string[] = [];
  const h: RelayHost = {
    verify: (a) => (a.startsWith("user:") ? a.slice(5) : undefined),
    attach(userId, deviceId) {
      const why = refuse?.();
      if (why) throw why;
      const stream = new DeviceStream({ userId, deviceId, outboxEvents, keepAliveMs: 60_000 });
      streams.set(`${userId}/${deviceId}`, stream);
      return {
        stream,
        close: () => {
          closed.push(`${userId}/${deviceId}`);
          stream.end();
        },
      };
    },
  };
  return { h, streams, closed };
}

/** Reads responses as the call's writer would, one at a time. */
function reader(call: RelayCall) {
  const it = call.responses();
  return {
    next: async (): Promise<RelayResponse | undefined> => (await it.next()).value ?? undefined,
    frames: async (): Promise<RelayFrame[]> => (await it.next()).value?.frames ?? [],
  };
}

const summary = (f: RelayFrame) =>
  f.frame.case === "response"
    ? { id: f.streamId, events: f.frame.value.events.map((e) => (e.event.case === "keepAlive" ? "keepAlive" : e.eventId)) }
    : f.frame.case === "end"
      ? { id: f.streamId, end: f.frame.value.code, message: f.frame.value.message, retryAfterMs: f.frame.value.retryAfterMs }
      : { id: f.streamId };

describe("RelayCall (the chat server's end of Relay)", () => {
  it("opens streams, says each is attached first, then carries their events tagged by stream id in one response", async () => {
    const { h, streams } = host();
    const call = new RelayCall(h);
    const r = reader(call);
    call.handle(open(1, "phone", "user:alice"));
    call.handle(open(2, "laptop", "user:bob"));
    expect((await r.frames()).map(summary)).toEqual([
      { id: 1n, events: ["keepAlive"] },
      { id: 2n, events: ["keepAlive"] },
    ]);
    streams.get("bob/laptop")!.push(msg(7));
    streams.get("alice/phone")!.push(msg(5));
    streams.get("alice/phone")!.push(msg(6));
    expect((await r.frames()).map(summary)).toEqual([
      { id: 2n, events: [7n] },
      { id: 1n, events: [5n, 6n] },
    ]);
    expect(call.size).toBe(2);
  });

  it("sends a stream opened with accept_encoded its responses serialized, beside streams that take them decoded", async () => {
    const { h, streams } = host();
    const call = new RelayCall(h);
    const r = reader(call);
    call.handle(openEncoded(1, "phone", "user:alice"));
    call.handle(openEncoded(2, "laptop", "user:bob"));
    call.handle(open(3, "tablet", "user:carol"));
    const attached = await r.frames();
    expect(attached.map((f) => f.frame.case)).toEqual(["encoded", "encoded", "response"]);
    const shared = msg(9, "to everyone");
    for (const key of ["alice/phone", "bob/laptop", "carol/tablet"]) streams.get(key)!.push(shared);
    streams.get("alice/phone")!.push(msg(10, "only alice"));
    const frames = await r.frames();
    const decoded = frames.map((f) => {
      if (f.frame.case === "encoded") {
        const res = fromBinary(SubscribeResponseSchema, f.frame.value.response);
        expect(f.frame.value.events, "the count the gateway's outbox bound uses").toBe(res.events.length);
        return { id: f.streamId, events: res.events };
      }
      return { id: f.streamId, events: f.frame.case === "response" ? f.frame.value.events : [] };
    });
    expect(decoded.map((d) => ({ id: d.id, events: d.events.map((e) => e.eventId) }))).toEqual([
      { id: 1n, events: [9n, 10n] },
      { id: 2n, events: [9n] },
      { id: 3n, events: [9n] },
    ]);
    // What arrives is the event as it was, not an approximation.
    expect(decoded[0]!.events[0]).toEqual(shared);
    expect(decoded[0]!.events[1]!.event.value).toMatchObject({ text: "only alice" });
  });

  it("refuses an open without a valid assertion, with a bad device id, or that the server refuses, each with its status and nothing attached", async () => {
    let refusal: DomainError | undefined;
    const { h, streams } = host(8, () => refusal);
    const call = new RelayCall(h);
    const r = reader(call);
    call.handle(open(1, "phone", "forged"));
    call.handle(open(2, "bad device id!", "user:alice"));
    refusal = new DomainError("Unavailable", "chat server is shutting down", { retryAfterMs: 1_500 });
    call.handle(open(3, "phone", "user:alice"));
    expect((await r.frames()).map(summary)).toEqual([
      { id: 1n, end: 16, message: "this call needs credentials: a bearer token or an API key", retryAfterMs: undefined },
      { id: 2n, end: 3, message: expect.stringMatching(/device_id/) as unknown, retryAfterMs: undefined },
      { id: 3n, end: 14, message: "chat server is shutting down", retryAfterMs: 1_500n },
    ]);
    expect(streams.size).toBe(0);
    expect(call.size).toBe(0);
  });

  it("a stream ended on the server (replaced by a newer one) ends with its status; a closed one is detached without an end", async () => {
    const { h, streams, closed } = host();
    const call = new RelayCall(h);
    const r = reader(call);
    call.handle(open(1, "phone", "user:alice"));
    call.handle(open(2, "laptop", "user:alice"));
    await r.frames();
    streams.get("alice/phone")!.end(replacedStream());
    call.handle(close(2));
    expect(closed).toEqual(["alice/laptop"]);
    expect((await r.frames()).map(summary)).toEqual([{ id: 1n, end: 10, message: "replaced by a newer stream of the same device", retryAfterMs: undefined }]);
    expect(closed.sort()).toEqual(["alice/laptop", "alice/phone"]);
    expect(call.size).toBe(0);
  });

  it("writes only as fast as the gateway reads: a stream whose outbox fills meanwhile ends as a slow consumer, the others keep theirs", async () => {
    const { h, streams } = host(4);
    const call = new RelayCall(h);
    const r = reader(call);
    call.handle(open(1, "phone", "user:alice"));
    call.handle(open(2, "phone", "user:bob"));
    await r.frames();
    // The writer has not asked for the next response: nothing leaves, the outboxes fill.
    for (let i = 1; i <= 5; i++) streams.get("alice/phone")!.push(msg(i));
    for (let i = 1; i <= 3; i++) streams.get("bob/phone")!.push(msg(100 + i));
    expect(streams.get("alice/phone")!.ended).toBe(true);
    expect((await r.frames()).map(summary)).toEqual([
      { id: 1n, end: 8, message: expect.stringMatching(/^slow consumer: more than 4 events/) as unknown, retryAfterMs: undefined },
      { id: 2n, events: [101n, 102n, 103n] },
    ]);
  });

  it("bounds one response's size: big messages go out over several responses, in order", async () => {
    const { h, streams } = host(1_000);
    const call = new RelayCall(h);
    const r = reader(call);
    call.handle(open(1, "phone", "user:alice"));
    await r.frames();
    const text = "x".repeat(100_000);
    for (let i = 1; i <= 40; i++) streams.get("alice/phone")!.push(msg(i, text));
    const ids: bigint[] = [];
    let responses = 0;
    while (ids.length < 40) {
      const frames = await r.frames();
      responses++;
      const events = frames.flatMap((f) => (f.frame.case === "response" ? f.frame.value.events : []));
      expect(events.reduce((n, e) => n + (e.event.case === "message" ? e.event.value.text.length : 0), 0) * 3).toBeLessThanOrEqual(MAX_BATCH_BYTES);
      ids.push(...events.map((e) => e.eventId));
    }
    expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => BigInt(i + 1)));
    expect(responses).toBeGreaterThan(2);
  });

  it("finishing the call detaches every stream and ends the responses; an id reused while open fails the call", async () => {
    const { h, closed } = host();
    const call = new RelayCall(h);
    const r = reader(call);
    call.handle(open(1, "phone", "user:alice"));
    call.handle(open(2, "phone", "user:bob"));
    await r.frames();
    call.finish();
    expect(closed.sort()).toEqual(["alice/phone", "bob/phone"]);
    expect(await r.next()).toBeUndefined();

    const again = new RelayCall(h);
    const r2 = reader(again);
    again.handle(open(1, "tablet", "user:alice"));
    await r2.frames();
    again.handle(open(1, "watch", "user:alice"));
    await expect(r2.next()).rejects.toThrow(/relay stream id 1 is already open/);
    expect(closed).toContain("alice/tablet");
  });
});

describe("RelayCall bounds", () => {
  it("a caller that floods refused opens and never reads is cut off, not buffered without end", async () => {
    const { h, closed } = host();
    const call = new RelayCall(h);
    call.handle(open(1, "phone", "user:alice"));
    for (let i = 2; i <= MAX_PENDING_REFUSALS + 5; i++) call.handle(open(i, "phone", "forged"));
    expect(closed).toEqual(["alice/phone"]);
    expect(call.size).toBe(0);
    const it = call.responses();
    // What was queued goes out, then the call ends with the reason.
    let frames = 0;
    await expect(
      (async () => {
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          frames += r.value.frames.length;
        }
      })(),
    ).rejects.toThrow(/more than 10000 refused relay streams/);
    expect(frames).toBeLessThanOrEqual(MAX_PENDING_REFUSALS + 1);
  });
});

describe("subscribeAssertionVerifier", () => {
  it("accepts an assertion signed with the mesh key for Subscribe only", () => {
    const verify = subscribeAssertionVerifier(testMeshKey);
    const identity = { userId: "alice", kind: "user" as const };
    expect(verify(signIdentityAssertion(testMeshKey, identity, SUBSCRIBE_PATH))).toBe("alice");
    expect(verify(signIdentityAssertion(testMeshKey, identity, "/switchboard.chat.v1.ChatService/SendMessage"))).toBeUndefined();
    expect(verify(signIdentityAssertion(meshKey("another-secret-0123456789abcdef0123456789"), identity, SUBSCRIBE_PATH))).toBeUndefined();
    expect(verify(signIdentityAssertion(testMeshKey, identity, SUBSCRIBE_PATH, Date.now() - 120_000))).toBeUndefined();
    expect(verify("")).toBeUndefined();
  });
});
