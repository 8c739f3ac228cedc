/**
 * The notification id is the dedupe key and each provider's collapse id, so a resend of the same
 * notification replaces the earlier one on the device. Providers limit those fields; longer ids
 * are hashed so the mapping stays one id -> one value.
 */
import { createHash } from "node:crypto";

const digest = (id: string): Buffer => createHash("sha256").update(id).digest();

/** Web Push Topic: at most 32 characters of the base64url alphabet (RFC 8030 section 5.4). */
export function webPushTopic(id: string): string {
  return digest(id).toString("base64url").slice(0, 32);
}

/** apns-collapse-id: at most 64 bytes. */
export function apnsCollapseId(id: string): string {
  return Buffer.byteLength(id) <= 64 ? id : digest(id).toString("base64url");
}

/** apns-id: a UUID, the same for every resend of one notification (name-based, RFC 9562 version 8 layout). */
export function apnsId(id: string): string {
  const b = digest(id).subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Seconds left until the notification expires (0 = deliver now or never), as TTL headers want. */
export function ttlSeconds(expireAtMs: number, nowMs: number): number {
  return Math.max(0, Math.floor((expireAtMs - nowMs) / 1000));
}
