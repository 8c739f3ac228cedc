/**
 * Field rules of the chat contract (chat.proto). Pure: every refusal is an InvalidArgument
 * DomainError naming the field, so a client can tell which input to fix.
 */
import { invalidArgument } from "../../../platform/errors.js";
import { USER_ID_RULE, isValidUserId } from "../../../platform/user-id.js";

export const MAX_TEXT_CODE_POINTS = 100_000;
export const MAX_GROUP_NAME_CODE_POINTS = 100;
export const MAX_CLIENT_MESSAGE_ID = 64;
export const MAX_REQUEST_ID = 128;
export const MAX_ADD_MEMBERS = 100;

const DEVICE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
const CHANNEL_ID = /^[A-Za-z0-9_-]{1,64}$/;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;
// Control characters make a group name render differently per client (or not at all).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Unicode code points, not UTF-16 units: an emoji counts once, as a person counts it. */
export function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

export function validateDeviceId(v: string, field = "device_id"): string {
  if (!v) throw invalidArgument(field, "is required (1-64 characters of A-Z a-z 0-9 _ . : -)");
  if (!DEVICE_ID.test(v)) throw invalidArgument(field, "must be 1-64 characters of A-Z a-z 0-9 _ . : -");
  return v;
}

export function validateChannelId(v: string, field = "channel_id"): string {
  if (!v) throw invalidArgument(field, "is required");
  if (!CHANNEL_ID.test(v)) throw invalidArgument(field, "is not a channel id (1-64 characters of A-Z a-z 0-9 _ -)");
  return v;
}

export function validateUserIdField(v: string, field: string): string {
  if (!v) throw invalidArgument(field, "is required");
  if (!isValidUserId(v)) throw invalidArgument(field, `is not a user id (${USER_ID_RULE})`);
  return v;
}

export function validateText(v: string, field = "text"): string {
  if (!v) throw invalidArgument(field, "is required (1-100,000 characters)");
  // Cheap bound first: more UTF-16 units than twice the cap cannot fit.
  if (v.length > MAX_TEXT_CODE_POINTS * 2 || codePoints(v) > MAX_TEXT_CODE_POINTS) {
    throw invalidArgument(field, `is longer than ${MAX_TEXT_CODE_POINTS.toLocaleString("en-US")} characters`);
  }
  return v;
}

export function validateClientMessageId(v: string, field = "client_message_id"): string {
  if (!v) throw invalidArgument(field, "is required (1-64 printable ASCII characters, e.g. a UUID)");
  if (v.length > MAX_CLIENT_MESSAGE_ID || !PRINTABLE_ASCII.test(v)) {
    throw invalidArgument(field, "must be 1-64 printable ASCII characters");
  }
  return v;
}

export function validateGroupName(v: string, field = "name"): string {
  if (!v || !v.trim()) throw invalidArgument(field, "is required (1-100 characters)");
  if (codePoints(v) > MAX_GROUP_NAME_CODE_POINTS) throw invalidArgument(field, "is longer than 100 characters");
  if (CONTROL.test(v)) throw invalidArgument(field, "must not contain control characters");
  return v;
}

/** Empty = no idempotency key. */
export function validateRequestId(v: string, field = "request_id"): string {
  if (v && (v.length > MAX_REQUEST_ID || !PRINTABLE_ASCII.test(v))) {
    throw invalidArgument(field, "must be 1-128 printable ASCII characters");
  }
  return v;
}

/** 0 = the default; otherwise 1..max. */
export function pageSizeOf(v: number, field: string, def: number, max: number): number {
  if (v === 0) return def;
  if (!Number.isInteger(v) || v < 1 || v > max) throw invalidArgument(field, `must be between 1 and ${max} (0 = default ${def})`);
  return v;
}

export function validateId(v: bigint, field: string): bigint {
  if (v <= 0n) throw invalidArgument(field, "is required (a non-zero id)");
  // Ids are positive signed 64-bit (the snowflake's top bit is 0).
  if (v > 0x7fff_ffff_ffff_ffffn) throw invalidArgument(field, "is not an id");
  return v;
}

/** Distinct, valid user ids in request order. */
export function distinctUserIds(ids: readonly string[], field: string): string[] {
  const seen = new Set<string>();
  ids.forEach((u, i) => {
    validateUserIdField(u, `${field}[${i}]`);
    seen.add(u);
  });
  return [...seen];
}
