/**
 * JWT (JWS compact) verification on node:crypto only.
 *
 * Algorithms: HS256 (shared secret), RS256 and ES256 (public keys, usually from a JWKS).
 * Alg-confusion safe: the algorithm is taken from the header but must be one the KEY allows —
 * a secret only verifies HS256, an RSA key only RS256, a P-256 key only ES256, and a JWK's own
 * `alg` must match. `alg: none` and everything else is refused. Then the token policy: `exp`
 * required and no further away than the maximum lifetime (nor exp - iat longer than it), so no
 * token is good forever; nbf (with leeway), iss and aud when configured, and a `sub` that is a
 * valid user id (platform/user-id.ts) taken exactly as signed, never trimmed or normalised.
 */
import { createHmac, createPublicKey, timingSafeEqual, verify as cryptoVerify, type JsonWebKey, type KeyObject } from "node:crypto";
import { isValidUserId, USER_ID_RULE } from "../../platform/user-id.js";
import { AuthError } from "./errors.js";

export type JwtAlg = "HS256" | "RS256" | "ES256";

/** A key able to verify some algorithm. */
export type VerifyKey =
  | { readonly kind: "secret"; readonly secret: Buffer }
  | { readonly kind: "public"; readonly alg: JwtAlg; readonly key: KeyObject };

export interface JwtHeader {
  readonly alg: string;
  readonly kid?: string;
  readonly typ?: string;
}

export interface JwtClaims {
  readonly sub: string;
  readonly exp: number;
  readonly nbf?: number;
  readonly iat?: number;
  readonly iss?: string;
  readonly aud?: string | readonly string[];
  readonly [claim: string]: unknown;
}

/** Finds the key for a token: by kid (JWKS) or the one secret. May throw AuthError("unknown_key"). */
export type KeyResolver = (header: JwtHeader) => Promise<VerifyKey | undefined> | VerifyKey | undefined;

export interface VerifyOptions {
  readonly issuer?: string;
  readonly audience?: string;
  readonly leewaySeconds?: number;
  /** Longest accepted lifetime: exp at most this far from now, and exp - iat at most this (default 86400). */
  readonly maxLifetimeSeconds?: number;
  /** Seconds since the epoch (tests). */
  readonly now?: number;
}

const B64URL = /^[A-Za-z0-9_-]*$/;
export const DEFAULT_MAX_LIFETIME_SECONDS = 86_400;
const MAX_TOKEN_CHARS = 8192;

export function secretKey(secret: string | Buffer): VerifyKey {
  return { kind: "secret", secret: typeof secret === "string" ? Buffer.from(secret, "utf8") : secret };
}

/**
 * A public key from a JWK, or undefined when the JWK is not a usable verification key
 * (symmetric keys in a JWKS are ignored on purpose: they would allow alg confusion).
 */
export function publicKeyFromJwk(jwk: JsonWebKey & { alg?: string; use?: string; kid?: string }): VerifyKey | undefined {
  if (jwk.use !== undefined && jwk.use !== "sig") return undefined;
  let alg: JwtAlg;
  if (jwk.kty === "RSA") alg = "RS256";
  else if (jwk.kty === "EC" && jwk.crv === "P-256") alg = "ES256";
  else return undefined;
  if (jwk.alg !== undefined && jwk.alg !== alg) return undefined;
  if ("d" in jwk && jwk.d !== undefined) {
    // Never accept private material as a verification key: strip it.
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
    return publicKeyFromJwk(pub);
  }
  try {
    const key = createPublicKey({ key: jwk, format: "jwk" });
    if (alg === "RS256" && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return undefined;
    return { kind: "public", alg, key };
  } catch {
    return undefined;
  }
}

function decodeJson(part: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw new AuthError("malformed", `malformed token: the ${what} is not base64url JSON`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new AuthError("malformed", `malformed token: the ${what} is not a JSON object`);
  }
  return v as Record<string, unknown>;
}

/** Splits and decodes without verifying. Throws AuthError("malformed"). */
export function decodeJwt(token: string): { header: JwtHeader; claims: Record<string, unknown>; signingInput: string; signature: Buffer } {
  if (token.length > MAX_TOKEN_CHARS) throw new AuthError("malformed", "malformed token: too long");
  const parts = token.split(".");
  if (parts.length !== 3 || parts.some((p) => !B64URL.test(p)) || parts[0] === "" || parts[1] === "") {
    throw new AuthError("malformed", "malformed token: expected a JWT (three base64url parts separated by dots)");
  }
  const header = decodeJson(parts[0]!, "header");
  const claims = decodeJson(parts[1]!, "payload");
  if (typeof header["alg"] !== "string") throw new AuthError("malformed", "malformed token: the header has no alg");
  if (header["kid"] !== undefined && typeof header["kid"] !== "string") {
    throw new AuthError("malformed", "malformed token: kid must be a string");
  }
  if (header["crit"] !== undefined) throw new AuthError("unsupported_alg", "token uses critical header extensions we do not support");
  return {
    header: header as unknown as JwtHeader,
    claims,
    signingInput: `${parts[0]}.${parts[1]}`,
    signature: Buffer.from(parts[2]!, "base64url"),
  };
}

const SUPPORTED: readonly string[] = ["HS256", "RS256", "ES256"];

function checkSignature(alg: string, key: VerifyKey, input: string, sig: Buffer): boolean {
  if (key.kind === "secret") {
    if (alg !== "HS256") return false;
    const mac = createHmac("sha256", key.secret).update(input).digest();
    return mac.length === sig.length && timingSafeEqual(mac, sig);
  }
  if (alg !== key.alg) return false;
  if (alg === "RS256") return cryptoVerify("sha256", Buffer.from(input), key.key, sig);
  if (sig.length !== 64) return false;
  return cryptoVerify("sha256", Buffer.from(input), { key: key.key, dsaEncoding: "ieee-p1363" }, sig);
}

function numericClaim(claims: Record<string, unknown>, name: string): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new AuthError("malformed", `malformed token: ${name} must be a number`);
  return v;
}

/** Verifies a compact JWT; returns its claims or throws AuthError with the reason. */
export async function verifyJwt(token: string, resolveKey: KeyResolver, opts: VerifyOptions = {}): Promise<JwtClaims> {
  const { header, claims, signingInput, signature } = decodeJwt(token);
  if (!SUPPORTED.includes(header.alg)) {
    throw new AuthError("unsupported_alg", `token algorithm "${header.alg}" is not accepted (use HS256, RS256 or ES256)`);
  }
  const key = await resolveKey(header);
  if (!key) {
    throw new AuthError("unknown_key", header.kid ? `token signed with unknown key id "${header.kid}"` : `no key accepts ${header.alg} tokens here`);
  }
  if (key.kind === "secret" ? header.alg !== "HS256" : header.alg !== key.alg) {
    throw new AuthError("unsupported_alg", `token algorithm ${header.alg} does not match the key (${key.kind === "secret" ? "HS256" : key.alg})`);
  }
  if (!checkSignature(header.alg, key, signingInput, signature)) throw new AuthError("bad_signature", "token signature is invalid");

  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const leeway = opts.leewaySeconds ?? 30;
  const maxLifetime = opts.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_SECONDS;
  const exp = numericClaim(claims, "exp");
  const nbf = numericClaim(claims, "nbf");
  const iat = numericClaim(claims, "iat");
  if (exp === undefined) throw new AuthError("missing_exp", "token has no expiry (exp): tokens without one are not accepted");
  if (now >= exp + leeway) {
    throw new AuthError("expired", `token expired at ${new Date(exp * 1000).toISOString()}`);
  }
  if (exp > now + maxLifetime + leeway) {
    throw new AuthError("lifetime_too_long", `token expires too far in the future: at most ${maxLifetime} s from now is accepted`);
  }
  if (iat !== undefined && exp - iat > maxLifetime) {
    throw new AuthError("lifetime_too_long", `token lifetime (exp - iat) is ${exp - iat} s: at most ${maxLifetime} s is accepted`);
  }
  if (nbf !== undefined && now + leeway < nbf) {
    throw new AuthError("not_yet_valid", `token not valid before ${new Date(nbf * 1000).toISOString()}`);
  }
  if (opts.issuer !== undefined && claims["iss"] !== opts.issuer) {
    throw new AuthError("wrong_issuer", "token issuer (iss) is not accepted here");
  }
  if (opts.audience !== undefined) {
    const aud = claims["aud"];
    const ok = typeof aud === "string" ? aud === opts.audience : Array.isArray(aud) && aud.includes(opts.audience);
    if (!ok) throw new AuthError("wrong_audience", "token audience (aud) does not include this service");
  }
  const sub = claims["sub"];
  if (typeof sub !== "string" || sub.length === 0) {
    throw new AuthError("malformed", `token has no subject (sub): a user id of ${USER_ID_RULE} is required`);
  }
  // Not echoed back: the refused value may hold the very control characters that break headers.
  if (!isValidUserId(sub)) throw new AuthError("invalid_subject", `token subject (sub) is not a valid user id: ${USER_ID_RULE}`);
  return claims as JwtClaims;
}

/** Signs an HS256 JWT (dev tokens and tests). */
export function signHs256(claims: Record<string, unknown>, secret: string | Buffer, header: Record<string, unknown> = {}): string {
  const h = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT", ...header })).toString("base64url");
  const p = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const sig = createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url");
  return `${h}.${p}.${sig}`;
}
