/**
 * SubscribeResponse bytes for relayed streams (and SessionResponse bytes for Sessions), each event
 * serialized once however many streams get it: a group message reaches every member's device on
 * this server as the same ChatEvent object, and serializing it again for each stream was most of a chat server's protobuf work in
 * group fan-out (bench/README.md, "relayed events serialized once"). The gateway forwards these
 * bytes to binary clients without decoding them (gateway/relayed-response.ts).
 *
 * Events are never changed once delivered (withCursor and friends make new ones), so the bytes
 * kept for an event stay right; they go when the event is collected.
 */
import { toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ChatEventSchema, type ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";

/** SubscribeResponse.events and ChatEvents.events are both field 1 (the same bytes). */
const EVENTS_FIELD = 1;
/** SessionResponse.events (a ChatEvents) is field 2. */
const SESSION_EVENTS_FIELD = 2;

const asFieldOf = new WeakMap<ChatEvent, Uint8Array>();

/** The event as one SubscribeResponse.events entry (tag, length, message). */
function eventField(ev: ChatEvent): Uint8Array {
  let field = asFieldOf.get(ev);
  if (!field) {
    field = new BinaryWriter().tag(EVENTS_FIELD, WireType.LengthDelimited).bytes(toBinary(ChatEventSchema, ev)).finish();
    asFieldOf.set(ev, field);
  }
  return field;
}

/** A SubscribeResponse holding `events`, in the protobuf binary format. */
export function encodeSubscribeResponse(events: readonly ChatEvent[]): Uint8Array {
  if (events.length === 1) return eventField(events[0]!);
  const fields = events.map(eventField);
  let size = 0;
  for (const f of fields) size += f.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const f of fields) {
    out.set(f, at);
    at += f.length;
  }
  return out;
}

/** A SessionResponse whose frame is `events`, in the protobuf binary format. */
export function encodeSessionEvents(events: readonly ChatEvent[]): Uint8Array {
  return new BinaryWriter().tag(SESSION_EVENTS_FIELD, WireType.LengthDelimited).bytes(encodeSubscribeResponse(events)).finish();
}
