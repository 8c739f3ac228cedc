/**
 * Compact JWS signing with node:crypto for the provider credentials (FCM's RS256 assertion,
 * APNs' ES256 provider token). ES256 signatures are the raw r||s form (RFC 7518 section 3.4),
 * not DER, hence ieee-p1363.
 */
import { sign, type KeyObject } from "node:crypto";

export type JwtAlg = "RS256" | "ES256";

const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");

export function signJwt(alg: JwtAlg, key: KeyObject, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64url({ alg, typ: "JWT", ...header })}.${b64url(claims)}`;
  const signature = alg === "ES256" ? sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" }) : sign("sha256", Buffer.from(input), key);
  return `${input}.${signature.toString("base64url")}`;
}
