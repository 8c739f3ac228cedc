/**
 * API key format and hashing (pure).
 *
 * A key is `sb_<id>_<secret>`: `id` is 16 lower-case base32 characters (public, the lookup key,
 * safe to log), `secret` is 32 random bytes as base64url (43 characters; it may itself contain
 * `_` or `-`). The store keeps SHA-256(secret) only; a presented key is checked by hashing its
 * secret and comparing digests in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { ApiKeyRecord } from "./ports.js";

export const API_KEY_PREFIX = "sb_";
const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
const KEY_PATTERN = /^sb_([a-z2-7]{16})_([A-Za-z0-9_-]{43})$/;

export interface ParsedApiKey {
  readonly id: string;
  readonly secret: string;
}

export function newKeyId(): string {
  const bytes = randomBytes(16);
  let s = "";
  for (const b of bytes) s += ID_ALPHABET[b & 31];
  return s;
}

/** Undefined when the text does not have the key format. */
export function parseApiKey(text: string): ParsedApiKey | undefined {
  const m = KEY_PATTERN.exec(text);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** Constant-time check of a presented secret against the stored digest. */
export function secretMatches(secret: string, storedSha256: string): boolean {
  const a = createHash("sha256").update(secret, "utf8").digest();
  const b = Buffer.from(storedSha256, "hex");
  return b.length === a.length && timingSafeEqual(a, b);
}

/** A new key: the plaintext (show once) and the record to store. */
export function mintApiKey(ownerId: string, name = "", now = new Date()): { key: string; record: ApiKeyRecord } {
  const id = newKeyId();
  const secret = randomBytes(32).toString("base64url");
  return {
    key: `${API_KEY_PREFIX}${id}_${secret}`,
    record: { id, ownerId, secretSha256: hashSecret(secret), name, createdAt: now },
  };
}
