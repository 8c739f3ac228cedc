import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ChatEventSchema, MessageSchema, SessionResponseSchema, SubscribeResponseSchema, type ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { Serialized, serializerFor } from "../../../platform/grpc/service-definition.js";
import { keepAliveEvent } from "./device-stream.js";
import { encodeSessionEvents, encodeSubscribeResponse } from "./encoded-events.js";

const msg = (id: number, text: string): ChatEvent =>
  create(ChatEventSchema, { eventId: BigInt(id), cursor: `c${id}`, event: { case: "message", value: create(MessageSchema, { messageId: BigInt(id), text }) } });

describe("encodeSubscribeResponse", () => {
  it("is byte for byte what protobuf-es serializes for the same SubscribeResponse", () => {
    const events = [msg(1, "héllo"), keepAliveEvent(), msg(2, "x".repeat(70_000))];
    for (const batch of [events.slice(0, 1), events.slice(1, 2), events]) {
      expect(Buffer.from(encodeSubscribeResponse(batch)).equals(Buffer.from(toBinary(SubscribeResponseSchema, create(SubscribeResponseSchema, { events: batch }))))).toBe(true);
    }
  });

  it("serializes an event once however many responses carry it", () => {
    const shared = msg(3, "to every member");
    const first = encodeSubscribeResponse([shared]);
    // The same bytes object again: nothing was serialized the second time.
    expect(encodeSubscribeResponse([shared])).toBe(first);
    const two = encodeSubscribeResponse([shared, msg(4, "next")]);
    expect(Buffer.from(two.subarray(0, first.length)).equals(Buffer.from(first))).toBe(true);
  });
});

describe("encodeSessionEvents", () => {
  it("is byte for byte what protobuf-es serializes for the same SessionResponse events frame", () => {
    const events = [msg(5, "héllo"), keepAliveEvent(), msg(6, "y".repeat(70_000))];
    for (const batch of [events.slice(0, 1), events.slice(1, 2), events]) {
      const expected = toBinary(SessionResponseSchema, create(SessionResponseSchema, { frame: { case: "events", value: { events: batch } } }));
      expect(Buffer.from(encodeSessionEvents(batch)).equals(Buffer.from(expected))).toBe(true);
    }
  });

  it("a grpc-js serializer writes a Serialized frame's bytes as they are", () => {
    const bytes = encodeSessionEvents([msg(7, "once")]);
    const out = serializerFor(SessionResponseSchema)(new Serialized(bytes) as never);
    expect(out.buffer === bytes.buffer && out.byteOffset === bytes.byteOffset && out.byteLength === bytes.byteLength).toBe(true);
  });
});
