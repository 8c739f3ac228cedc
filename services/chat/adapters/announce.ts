import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { ChatEventSchema, MessageSchema, type ChatEvent, type Message } from "../../../gen/switchboard/chat/v1/chat_pb.js";

/** The message a "message" change re-announces, if the event is one. */
export function announcedMessage(event: ChatEvent): Message | undefined {
  return event.event.case === "message" ? event.event.value : undefined;
}

/**
 * A copy of a re-announce event whose message is now a tombstone: the stored change must not
 * keep the text of a deleted message either.
 */
export function tombstoneAnnounce(event: ChatEvent, at: Date): ChatEvent {
  const m = announcedMessage(event);
  if (!m) return event;
  return create(ChatEventSchema, {
    ...event,
    event: { case: "message", value: create(MessageSchema, { ...m, text: "", deleted: true, deleteTime: timestampFromDate(at) }) },
  });
}
