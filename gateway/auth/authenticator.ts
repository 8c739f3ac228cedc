/**
 * Turns request credentials into an Identity.
 *
 * - `Authorization: Bearer <jwt>`: a user; `sub` is the user id, exactly (see jwt.ts for the
 *   checks); the identity expires with the token.
 * - `x-api-key: sb_<id>_<secret>` or `Authorization: ApiKey sb_...`: a partner; the key's
 *   owner is the identity (a valid user id too, platform/user-id.ts).
 * - No credentials: undefined (public calls go on; others answer Unauthenticated).
 * - Bad credentials: AuthError (Unauthenticated) saying why: malformed, bad signature,
 *   expired, no expiry, lifetime too long, not yet valid, wrong issuer/audience, unknown key,
 *   revoked, subject not a valid user id.
 */
import type { Identity } from "../../platform/identity.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { isValidUserId, USER_ID_RULE } from "../../platform/user-id.js";
import type { JwtSettings } from "./config.js";
import { ApiKeyVerifier } from "./api-keys.js";
import { AuthError } from "./errors.js";
import { JwksCache } from "./jwks.js";
import { secretKey, verifyJwt, type KeyResolver, type VerifyKey } from "./jwt.js";

/** Reads one request header (lower-case name); undefined when absent. */
export type HeaderReader = (name: string) => string | undefined;

export interface Authenticator {
  authenticate(header: HeaderReader): Promise<Identity | undefined>;
}

export interface AuthenticatorDeps {
  readonly jwt: JwtSettings;
  readonly apiKeys: ApiKeyVerifier;
  readonly log?: EngineLog;
}

export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const secret: VerifyKey | undefined = deps.jwt.hs256Secret !== undefined ? secretKey(deps.jwt.hs256Secret) : undefined;
  const jwks = deps.jwt.jwksUrl !== undefined ? new JwksCache({ url: deps.jwt.jwksUrl, ...(deps.log ? { log: deps.log } : {}) }) : undefined;
  const resolve: KeyResolver = (header) => {
    if (header.alg === "HS256") return secret;
    return jwks?.resolve(header);
  };
  const verifyOptions = {
    leewaySeconds: deps.jwt.leewaySeconds,
    maxLifetimeSeconds: deps.jwt.maxLifetimeSeconds,
    ...(deps.jwt.issuer !== undefined ? { issuer: deps.jwt.issuer } : {}),
    ...(deps.jwt.audience !== undefined ? { audience: deps.jwt.audience } : {}),
  };

  const fromJwt = async (token: string): Promise<Identity> => {
    const claims = await verifyJwt(token, resolve, verifyOptions);
    return { userId: claims.sub, kind: "user", expiresAtMs: claims.exp * 1000 };
  };
  const fromApiKey = async (key: string): Promise<Identity> => {
    const record = await deps.apiKeys.verify(key);
    // Keys issued before ids had a rule could carry any owner string: refused, never normalised.
    if (!isValidUserId(record.ownerId)) throw new AuthError("invalid_subject", `API key ${record.id} belongs to an owner id that is not valid: ${USER_ID_RULE}`);
    return { userId: record.ownerId, kind: "api_key" };
  };

  return {
    async authenticate(header) {
      const authorization = header("authorization")?.trim();
      const apiKey = header("x-api-key")?.trim();
      if (authorization && apiKey !== undefined) {
        throw new AuthError("malformed", "send one credential: either Authorization or x-api-key, not both");
      }
      if (apiKey !== undefined) {
        if (apiKey === "") throw new AuthError("malformed", "malformed API key: x-api-key is empty");
        return fromApiKey(apiKey);
      }
      if (authorization === undefined || authorization === "") return undefined;
      const m = /^(\S+)\s+(\S+)$/.exec(authorization);
      if (!m) throw new AuthError("malformed", "malformed Authorization header: expected 'Bearer <jwt>' or 'ApiKey <key>'");
      const scheme = m[1]!.toLowerCase();
      if (scheme === "bearer") return fromJwt(m[2]!);
      if (scheme === "apikey") return fromApiKey(m[2]!);
      throw new AuthError("malformed", `unsupported Authorization scheme "${m[1]}": use Bearer or ApiKey`);
    },
  };
}
