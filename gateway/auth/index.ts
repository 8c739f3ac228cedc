/**
 * The gateway's auth and abuse limits, assembled from the environment and the engine:
 * JWT / API key authentication, the Connect interceptor, the link-creation rate limiter.
 */
import type { KeyObject } from "node:crypto";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { EngineKind } from "../../platform/config.js";
import type { Engine } from "../../platform/engine.js";
import type { Identity } from "../../platform/identity.js";
import { createApiKeyStore } from "../../services/apikeys/store.js";
import { CreateRateLimiter } from "../rate-limit.js";
import { ApiKeyVerifier } from "./api-keys.js";
import { createAuthenticator, type Authenticator } from "./authenticator.js";
import { readGatewayAuthSettings, type Env, type GatewayAuthSettings } from "./config.js";
import { createAdmission, type Admission } from "./admission.js";
import { authInterceptor, clientContextValues, identityAssertionHeaders, identityHeadersFor } from "./interceptor.js";

export interface GatewayAuth {
  readonly settings: GatewayAuthSettings;
  readonly authenticator: Authenticator;
  readonly limiter: CreateRateLimiter;
  /** Authenticates from path and headers before the body is read (see admission.ts). */
  readonly admission: Admission;
  readonly interceptor: ReturnType<typeof authInterceptor>;
  readonly contextValues: ReturnType<typeof clientContextValues>;
  /** For forwardingImpl: the caller's identity, signed for the forwarded method. */
  readonly headersFor: ReturnType<typeof identityHeadersFor>;
  /** For the gateway's own doors (REST): `identity` signed for a call of `methodPath`. */
  readonly identityHeaders: (identity: Identity, methodPath: string) => Headers;
}

/** How long a verified API key is trusted without a store read: a revocation takes effect within it, on every engine. */
export const API_KEY_CACHE_TTL_MS = 5_000;

/** Throws ConfigError (one line naming the variable) on a bad setting. */
export function createGatewayAuth(deps: {
  readonly env: Env;
  readonly engine: Engine;
  readonly engineKind: EngineKind;
  /** Signs the identity passed to internal services (platform/mesh-secret.ts). */
  readonly meshKey: KeyObject;
  readonly log: Logger;
  readonly registry?: Registry;
}): GatewayAuth {
  const settings = readGatewayAuthSettings(deps.env, deps.engineKind);
  const log = deps.log.child({ component: "auth" });
  if (settings.jwt.devSecret) {
    log.warn({}, "auth: using the built-in DEV JWT secret (memory engine only); set SWITCHBOARD_JWT_HS256_SECRET or SWITCHBOARD_JWKS_URL for anything real");
  }
  const apiKeys = new ApiKeyVerifier(createApiKeyStore(deps.engine, log), { cacheTtlMs: API_KEY_CACHE_TTL_MS });
  const authenticator = createAuthenticator({ jwt: settings.jwt, apiKeys, log });
  const limiter = new CreateRateLimiter({
    cache: deps.engine.cache,
    perMinuteIp: settings.rateLimit.createPerMinuteIp,
    perMinuteUser: settings.rateLimit.createPerMinuteUser,
    log,
    ...(deps.registry ? { registry: deps.registry } : {}),
  });
  return {
    settings,
    authenticator,
    limiter,
    admission: createAdmission({ authenticator, log }),
    interceptor: authInterceptor({ limiter, log }),
    contextValues: clientContextValues(settings.rateLimit.trustProxyHops),
    headersFor: identityHeadersFor(deps.meshKey),
    identityHeaders: (identity, methodPath) => identityAssertionHeaders(deps.meshKey, identity, methodPath),
  };
}
