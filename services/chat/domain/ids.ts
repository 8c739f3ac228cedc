/**
 * Channel ids. A direct channel's id is derived from the pair, so both users (and every server)
 * name the same channel without a lookup; it is a hash, so it reveals neither user id.
 * Group ids are random (or derived from the creator's request id, so a retried create lands on
 * the same channel even before its claim is read back).
 */
import { createHash } from "node:crypto";

const h = (s: string): string => createHash("sha256").update(s).digest("base64url");

/** Order-free key of a user pair (NUL cannot appear in a user id, so "a\0b" is unambiguous). */
export function directPairKey(a: string, b: string): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
}

export function directChannelId(a: string, b: string): string {
  return `d${h(directPairKey(a, b)).slice(0, 32)}`;
}

export function groupChannelIdFor(creatorId: string, requestId: string): string {
  return `g${h(`${creatorId}\u0000${requestId}`).slice(0, 32)}`;
}

/** A random group id from 16+ random bytes (the caller supplies them: no I/O here). */
export function randomGroupChannelId(random: Uint8Array): string {
  return `g${Buffer.from(random).toString("base64url").slice(0, 32)}`;
}

/** What a group request id stands for: a retry must ask for the same group. */
export function groupRequestHash(name: string, memberIds: readonly string[]): string {
  return h(JSON.stringify([name, [...memberIds].sort()]));
}
