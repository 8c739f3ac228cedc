/**
 * Presence transitions on the chat streams (issue 13: "a contact sees each transition live ... on
 * the chat stream"). Every chat server subscribes to `switchboard.presence.changed` (published by
 * the presence service, core NATS) and hands each change, as an ephemeral ChatEvent `presence`
 * (no event id, no cursor, never in Sync), to ITS OWN streams of the users named in the change's
 * `contact_user_ids`: nobody else gets it. Give it the server's local delivery (LocalDelivery),
 * not a routing one: every server receives every change, so routing it again would duplicate it.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { ChatEventSchema } from "../../gen/switchboard/chat/v1/chat_pb.js";
import { PresenceChangedSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import { UserPresenceSchema } from "../../gen/switchboard/presence/v1/presence_pb.js";
import type { EventBus, Unsubscribe } from "../../platform/ports/event-bus.js";
import type { Delivery } from "./ports.js";

/** The subject the presence service publishes PresenceChanged on (services/presence/fanout.ts). */
export const PRESENCE_CHANGED = "switchboard.presence.changed";

export function relayPresenceToStreams(bus: EventBus, local: Pick<Delivery, "deliver">, onError: (what: string, err: unknown) => void = () => {}): Unsubscribe {
  return bus.subscribe(PRESENCE_CHANGED, (msg) => {
    let ev;
    try {
      ev = fromBinary(PresenceChangedSchema, msg.data);
    } catch (e) {
      onError("decode PresenceChanged", e);
      return;
    }
    if (ev.contactUserIds.length === 0) return;
    const event = create(ChatEventSchema, {
      ...(ev.time ? { time: ev.time } : {}),
      event: {
        case: "presence",
        value: create(UserPresenceSchema, { userId: ev.userId, state: ev.state, ...(ev.lastSeenTime ? { lastSeenTime: ev.lastSeenTime } : {}) }),
      },
    });
    local.deliver(ev.contactUserIds, event);
  });
}
