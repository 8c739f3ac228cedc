/**
 * How large a request message each gateway method accepts, after decompression and per message
 * on streams. Connect enforces the limit on the compressed bytes, stops inflating at it and
 * refuses to parse beyond it, so the CPU an unauthenticated client can buy with one request
 * (JSON parse, protobuf decode, brotli/gzip inflate) is bounded by these numbers, not by the
 * old 4 MiB.
 *
 * Sizes come from what a legitimate message can hold: a code is at most 32 characters, a long
 * URL at most 2048 (services/shortener/domain/validate.ts); 16 KiB leaves room for that in JSON
 * with every optional field. Operators override per method (SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES)
 * or change the default (SWITCHBOARD_GATEWAY_MAX_MESSAGE_BYTES).
 *
 * Chat: a message text is up to 100,000 code points, 400,000 UTF-8 bytes in protobuf, and up to
 * 600,000 bytes as JSON when every character is a \u-escaped control character. SendMessage and
 * Session (whose `send` frame carries a SendMessageRequest; the limit is per frame) get 1 MiB.
 * Group membership calls carry up to 100 user ids of up to 256 characters, which JSON escaping
 * can double (about 52 KB): 64 KiB. Raising SWITCHBOARD_CHAT_MAX_GROUP_MEMBERS far above 100
 * needs a matching override for CreateGroupChannel and AddMembers.
 * The calls that carry only ids (a channel, a device, a user, a message, a flag) get 4 KiB:
 * 256-character ids escaped are still a few hundred bytes, and a request flood of those methods
 * cannot make the edge parse 16 KiB each. Calls with page tokens or cursors keep the default.
 *
 * Presence: GetPresence and WatchPresence carry up to 500 user ids of up to 256 characters (about
 * 130 KB in protobuf, up to about 260 KB in JSON with every character escaped): 288 KiB. Heartbeat
 * carries a device id and a flag: 4 KiB.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { ConfigError } from "../platform/config.js";

/** A chat message of 100,000 code points, in protobuf or JSON (escapes included). */
export const CHAT_TEXT_BYTES = 1024 * 1024;
const CHAT_MEMBERS_BYTES = 64 * 1024;
const CHAT_IDS_BYTES = 4 * 1024;
const PRESENCE_USERS_BYTES = 288 * 1024;

/** Methods whose requests are tiny by construction, or larger than the default by design. */
const BUILT_IN: Readonly<Record<string, number>> = {
  "switchboard.redirect.v1.RedirectService/Resolve": 1024,
  "switchboard.redirect.v1.RedirectService/WatchClicks": 1024,
  "grpc.health.v1.Health/Check": 1024,
  "grpc.health.v1.Health/Watch": 1024,
  "grpc.health.v1.Health/List": 1024,
  // Chat: see the header for the sizes.
  "switchboard.chat.v1.ChatService/SendMessage": CHAT_TEXT_BYTES,
  "switchboard.chat.v1.ChatService/Session": CHAT_TEXT_BYTES,
  "switchboard.chat.v1.ChatService/CreateGroupChannel": CHAT_MEMBERS_BYTES,
  "switchboard.chat.v1.ChatService/AddMembers": CHAT_MEMBERS_BYTES,
  "switchboard.chat.v1.ChatService/CreateDirectChannel": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/GetChannel": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/RemoveMember": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/LeaveChannel": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/MarkRead": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/MarkDelivered": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/DeleteMessage": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/SendTyping": CHAT_IDS_BYTES,
  "switchboard.chat.v1.ChatService/Subscribe": CHAT_IDS_BYTES,
  // Internal (refused at the edge); its frames carry a device id and an identity assertion.
  "switchboard.chat.v1.ChatService/Relay": CHAT_IDS_BYTES,
  "switchboard.presence.v1.PresenceService/GetPresence": PRESENCE_USERS_BYTES,
  "switchboard.presence.v1.PresenceService/WatchPresence": PRESENCE_USERS_BYTES,
  "switchboard.presence.v1.PresenceService/Heartbeat": CHAT_IDS_BYTES,
  // Reflection requests carry a host and one file or symbol name.
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": 2048,
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": 2048,
};

export interface MessageLimits {
  /** Largest accepted request message for a method, in bytes. */
  readMaxBytes(service: DescService, method: DescMethod): number;
}

export function methodKey(service: DescService, method: DescMethod): string {
  return `${service.typeName}/${method.name}`;
}

/**
 * The table for the served services: built-in sizes, then the operator's overrides. An override
 * naming a method the gateway does not serve is a ConfigError (a typo would otherwise be silent).
 */
export function createMessageLimits(
  services: readonly DescService[],
  defaultBytes: number,
  overrides: Readonly<Record<string, number>> = {},
): MessageLimits {
  const served = new Set(services.flatMap((s) => s.methods.map((m) => methodKey(s, m))));
  for (const name of Object.keys(overrides)) {
    if (!served.has(name)) {
      throw new ConfigError("SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES", `names ${name}, which the gateway does not serve`);
    }
  }
  return {
    readMaxBytes(service, method) {
      const key = methodKey(service, method);
      return overrides[key] ?? BUILT_IN[key] ?? defaultBytes;
    },
  };
}
