/**
 * The identity assertion: how the gateway proves to an internal service who the caller is.
 *
 *   v1.<base64url(userId)>.<kind>.<credential expiry ms or "">.<expiry ms>.<mac>
 *   mac = base64url(HMAC-SHA256(mesh secret, "switchboard-identity-v1\n" + method path + "\n" + the fields before it))
 *
 * - The user id is base64url, so no transport can trim or fold it: what the gateway
 *   authenticated is exactly what the service sees.
 * - The method path (`/pkg.Service/Method`) is inside the MAC but not in the value: an
 *   assertion only works for the call it was issued for and cannot be replayed against another.
 * - A short expiry (ASSERTION_LIFETIME_MS) bounds replay of a captured assertion; a small leeway
 *   absorbs clock skew between mesh hosts.
 * - The credential expiry (the JWT's exp) rides along so services can end long streams when the
 *   token that opened them expires.
 * One HMAC to sign at the gateway and one to verify per internal call; compared in constant time.
 */
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import type { Identity, IdentityKind } from "./identity.js";
import { isValidUserId } from "./user-id.js";

export const ASSERTION_LIFETIME_MS = 60_000;
/** Clock skew tolerated between the gateway and a service. */
export const ASSERTION_LEEWAY_MS = 5_000;
export const MIN_MESH_SECRET_BYTES = 32;

const DOMAIN = "switchboard-identity-v1\n";
/** v1 + 342 chars of base64url for 256 bytes + kind + two 13-digit times + 43 chars of MAC, with room. */
const MAX_ASSERTION_CHARS = 512;
const KINDS: ReadonlySet<string> = new Set<IdentityKind>(["user", "api_key"]);
const MS = /^\d{1,15}$/;

/** The mesh secret as a key object (hashed once, not per call). */
export function meshKey(secret: string | Buffer): KeyObject {
  return createSecretKey(typeof secret === "string" ? Buffer.from(secret, "utf8") : secret);
}

function mac(key: KeyObject, methodPath: string, body: string): string {
  return createHmac("sha256", key).update(`${DOMAIN}${methodPath}\n${body}`).digest("base64url");
}

/** Signs `identity` for one call of `methodPath` (`/pkg.Service/Method`). */
export function signIdentityAssertion(key: KeyObject, identity: Identity, methodPath: string, nowMs = Date.now()): string {
  const credentialExpiry = identity.expiresAtMs === undefined ? "" : String(Math.floor(identity.expiresAtMs));
  const body = `v1.${Buffer.from(identity.userId, "utf8").toString("base64url")}.${identity.kind}.${credentialExpiry}.${nowMs + ASSERTION_LIFETIME_MS}`;
  return `${body}.${mac(key, methodPath, body)}`;
}

export type AssertionCheck =
  | { readonly ok: true; readonly identity: Identity }
  | { readonly ok: false; readonly reason: "malformed" | "bad_mac" | "expired" | "not_yet_valid" | "invalid_user_id" };

/** Verifies an assertion presented for a call of `methodPath`. Never throws. */
export function verifyIdentityAssertion(key: KeyObject, value: string, methodPath: string, nowMs = Date.now()): AssertionCheck {
  if (value.length > MAX_ASSERTION_CHARS) return { ok: false, reason: "malformed" };
  const parts = value.split(".");
  if (parts.length !== 6 || parts[0] !== "v1") return { ok: false, reason: "malformed" };
  const [, user, kind, credentialExpiry, expiry, presented] = parts as [string, string, string, string, string, string];
  if (!KINDS.has(kind) || !MS.test(expiry) || (credentialExpiry !== "" && !MS.test(credentialExpiry))) {
    return { ok: false, reason: "malformed" };
  }
  const expected = Buffer.from(mac(key, methodPath, value.slice(0, value.length - presented.length - 1)));
  const given = Buffer.from(presented);
  // Compared as base64url text, so a non-canonical spelling of the right MAC does not pass either.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: "bad_mac" };
  const expiresAt = Number(expiry);
  if (nowMs > expiresAt + ASSERTION_LEEWAY_MS) return { ok: false, reason: "expired" };
  // Issued "in the future" beyond the skew we allow: not a lifetime this gateway would sign.
  if (expiresAt > nowMs + ASSERTION_LIFETIME_MS + ASSERTION_LEEWAY_MS) return { ok: false, reason: "not_yet_valid" };
  const userId = Buffer.from(user, "base64url").toString("utf8");
  if (!isValidUserId(userId) || Buffer.from(userId, "utf8").toString("base64url") !== user) return { ok: false, reason: "invalid_user_id" };
  return {
    ok: true,
    identity: { userId, kind: kind as IdentityKind, ...(credentialExpiry !== "" ? { expiresAtMs: Number(credentialExpiry) } : {}) },
  };
}
