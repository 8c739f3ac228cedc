/** Verifying side of compact JWS for the local servers (independent of the providers' signer). */
import { verify, type KeyObject } from "node:crypto";

export interface DecodedJwt {
  readonly header: Record<string, unknown>;
  readonly claims: Record<string, unknown>;
}

/** The decoded token when its signature verifies with `key` under `alg`, else a reason. */
export function verifyJwt(token: string, alg: "RS256" | "ES256", key: KeyObject): DecodedJwt | string {
  const parts = token.split(".");
  if (parts.length !== 3) return "not a compact JWS";
  const [h, c, s] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as Record<string, unknown>;
    claims = JSON.parse(Buffer.from(c, "base64url").toString("utf8")) as Record<string, unknown>;
  } catch {
    return "header or claims are not JSON";
  }
  if (header.alg !== alg) return `alg ${String(header.alg)}, expected ${alg}`;
  const signature = Buffer.from(s, "base64url");
  if (alg === "ES256" && signature.length !== 64) return "ES256 signature is not 64 bytes (r||s)";
  const ok =
    alg === "ES256"
      ? verify("sha256", Buffer.from(`${h}.${c}`), { key, dsaEncoding: "ieee-p1363" }, signature)
      : verify("sha256", Buffer.from(`${h}.${c}`), key, signature);
  return ok ? { header, claims } : "bad signature";
}
