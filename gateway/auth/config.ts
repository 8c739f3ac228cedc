/**
 * The gateway's auth and abuse-limit settings, read from the environment and validated at
 * start: a bad value throws ConfigError (one line naming the variable), like platform/config.ts.
 *
 * | variable | default |
 * |---|---|
 * | SWITCHBOARD_JWT_HS256_SECRET | memory engine: the built-in dev secret (logged as such); cluster: required unless JWKS |
 * | SWITCHBOARD_JWKS_URL | unset (http/https URL of a JWKS; RS256 / ES256 keys by kid) |
 * | SWITCHBOARD_JWT_ISSUER / SWITCHBOARD_JWT_AUDIENCE | unset (not checked) |
 * | SWITCHBOARD_JWT_LEEWAY_SECONDS | 30 (clock skew allowed on exp / nbf) |
 * | SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS | 86400 (longest token accepted: exp - now and exp - iat; 60-31536000) |
 * | SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP | 120 (0 = off) |
 * | SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER | 60 (0 = off) |
 * | SWITCHBOARD_TRUST_PROXY | off; `true`/`1` = trust one proxy hop of X-Forwarded-For, `N` = N hops |
 */
import { ConfigError, type EngineKind } from "../../platform/config.js";
import { DEFAULT_MAX_LIFETIME_SECONDS } from "./jwt.js";

export type Env = Readonly<Record<string, string | undefined>>;

/** Public on purpose: only for the memory engine and `switchboard dev-token`. Never for real deployments. */
export const DEV_JWT_SECRET = "switchboard-dev-secret-not-for-production-0123456789";
export const MIN_HS256_SECRET_BYTES = 32;
/** A minute at least (shorter would refuse tokens for ordinary clock skew); a year at most. */
const MIN_MAX_LIFETIME_SECONDS = 60;
const MAX_MAX_LIFETIME_SECONDS = 31_536_000;

export interface JwtSettings {
  /** HS256 secret (utf-8 bytes). */
  readonly hs256Secret?: string;
  /** True when hs256Secret is the public DEV_JWT_SECRET. */
  readonly devSecret: boolean;
  readonly jwksUrl?: string;
  readonly issuer?: string;
  readonly audience?: string;
  readonly leewaySeconds: number;
  /** Tokens whose exp is further than this from now, or whose exp - iat exceeds it, are refused. */
  readonly maxLifetimeSeconds: number;
}

export interface RateLimitSettings {
  /** Link creations per client IP per minute; 0 = unlimited. */
  readonly createPerMinuteIp: number;
  /** Link creations per authenticated identity per minute; 0 = unlimited. */
  readonly createPerMinuteUser: number;
  /** X-Forwarded-For hops to trust (0 = use the socket's remote address only). */
  readonly trustProxyHops: number;
}

export interface GatewayAuthSettings {
  readonly jwt: JwtSettings;
  readonly rateLimit: RateLimitSettings;
}

function reader(env: Env) {
  return (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
}

export function readJwtSettings(env: Env, engine: EngineKind): JwtSettings {
  const read = reader(env);
  const secret = env["SWITCHBOARD_JWT_HS256_SECRET"];
  const jwksUrl = read("SWITCHBOARD_JWKS_URL");
  if (secret !== undefined && secret !== "" && Buffer.byteLength(secret, "utf8") < MIN_HS256_SECRET_BYTES) {
    throw new ConfigError("SWITCHBOARD_JWT_HS256_SECRET", `must be at least ${MIN_HS256_SECRET_BYTES} bytes`);
  }
  if (jwksUrl !== undefined) {
    let u: URL;
    try {
      u = new URL(jwksUrl);
    } catch {
      throw new ConfigError("SWITCHBOARD_JWKS_URL", `must be an http(s) URL (got "${jwksUrl}")`);
    }
    if ((u.protocol !== "https:" && u.protocol !== "http:") || u.hostname === "") {
      throw new ConfigError("SWITCHBOARD_JWKS_URL", `must be an http(s) URL (got "${jwksUrl}")`);
    }
  }
  const leeway = read("SWITCHBOARD_JWT_LEEWAY_SECONDS");
  if (leeway !== undefined && (!/^\d+$/.test(leeway) || Number(leeway) > 300)) {
    throw new ConfigError("SWITCHBOARD_JWT_LEEWAY_SECONDS", `must be a whole number 0-300 (got "${leeway}")`);
  }
  const maxLifetime = read("SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS");
  if (maxLifetime !== undefined && (!/^\d+$/.test(maxLifetime) || Number(maxLifetime) < MIN_MAX_LIFETIME_SECONDS || Number(maxLifetime) > MAX_MAX_LIFETIME_SECONDS)) {
    throw new ConfigError(
      "SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS",
      `must be a whole number of seconds ${MIN_MAX_LIFETIME_SECONDS}-${MAX_MAX_LIFETIME_SECONDS} (got "${maxLifetime}")`,
    );
  }
  const haveSecret = secret !== undefined && secret !== "";
  if (!haveSecret && jwksUrl === undefined && engine === "cluster") {
    throw new ConfigError(
      "SWITCHBOARD_JWT_HS256_SECRET",
      "is required on the cluster engine (or set SWITCHBOARD_JWKS_URL); the dev secret is for the memory engine only",
    );
  }
  const useDev = !haveSecret && jwksUrl === undefined;
  const issuer = read("SWITCHBOARD_JWT_ISSUER");
  const audience = read("SWITCHBOARD_JWT_AUDIENCE");
  return {
    ...(haveSecret ? { hs256Secret: secret } : useDev ? { hs256Secret: DEV_JWT_SECRET } : {}),
    devSecret: useDev,
    ...(jwksUrl !== undefined ? { jwksUrl } : {}),
    ...(issuer !== undefined ? { issuer } : {}),
    ...(audience !== undefined ? { audience } : {}),
    leewaySeconds: leeway === undefined ? 30 : Number(leeway),
    maxLifetimeSeconds: maxLifetime === undefined ? DEFAULT_MAX_LIFETIME_SECONDS : Number(maxLifetime),
  };
}

export function readRateLimitSettings(env: Env): RateLimitSettings {
  const read = reader(env);
  const int = (name: string, fallback: number): number => {
    const v = read(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) > 1_000_000) {
      throw new ConfigError(name, `must be a whole number 0-1000000 per minute, 0 = no limit (got "${v}")`);
    }
    return Number(v);
  };
  const trust = read("SWITCHBOARD_TRUST_PROXY");
  let hops = 0;
  if (trust !== undefined) {
    const t = trust.toLowerCase();
    if (t === "true" || t === "yes") hops = 1;
    else if (t === "false" || t === "no") hops = 0;
    else if (/^\d+$/.test(t) && Number(t) <= 10) hops = Number(t);
    else throw new ConfigError("SWITCHBOARD_TRUST_PROXY", `must be true, false or a hop count 0-10 (got "${trust}")`);
  }
  return {
    createPerMinuteIp: int("SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP", 120),
    createPerMinuteUser: int("SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER", 60),
    trustProxyHops: hops,
  };
}

export function readGatewayAuthSettings(env: Env, engine: EngineKind): GatewayAuthSettings {
  return { jwt: readJwtSettings(env, engine), rateLimit: readRateLimitSettings(env) };
}
