/**
 * The gateway's Connect interceptor: authenticates every non-public call, puts the identity in
 * the call context (forwarded upstream by forwardingImpl's `headersFor`, see `identityHeadersFor`)
 * and applies the link-creation rate limits.
 *
 * Public (no credentials needed, credentials ignored): RedirectService/Resolve, gRPC server
 * reflection (v1, v1alpha) and gRPC health. Everything else answers Unauthenticated without
 * valid credentials.
 */
import { createContextKey, createContextValues, type ContextValues, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type http from "node:http";
import type http2 from "node:http2";
import type { Logger } from "pino";
import { toConnectError } from "../../platform/grpc/status.js";
import { identityHeaders, identityKey, type Identity } from "../../platform/identity.js";
import { clientIpOf, type CreateRateLimiter } from "../rate-limit.js";
import type { Authenticator } from "./authenticator.js";
import { AuthError, MISSING_CREDENTIALS } from "./errors.js";

export const PUBLIC_SERVICES: ReadonlySet<string> = new Set([
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "grpc.health.v1.Health",
]);
export const PUBLIC_METHODS: ReadonlySet<string> = new Set(["switchboard.redirect.v1.RedirectService/Resolve"]);
/**
 * Rate-limited as one link creation per call. BulkCreateLinks is not here: it is charged per
 * item as its stream is read (gateway/bulk-create-limit.ts), not once per call.
 */
export const CREATE_METHODS: ReadonlySet<string> = new Set(["switchboard.shortener.v1.ShortenerService/CreateLink"]);

export function isPublicMethod(service: string, method: string): boolean {
  return PUBLIC_SERVICES.has(service) || PUBLIC_METHODS.has(`${service}/${method}`);
}

/** The client address of the call (socket, or X-Forwarded-For when trusted). */
export const clientIpKey = createContextKey<string | undefined>(undefined, { description: "client ip" });

/** For connectNodeAdapter's `contextValues`: records the client address per call. */
export function clientContextValues(trustProxyHops: number): (req: http.IncomingMessage | http2.Http2ServerRequest) => ContextValues {
  return (req) => {
    const values = createContextValues();
    values.set(clientIpKey, clientIpOf(req, trustProxyHops));
    return values;
  };
}

/** forwardingImpl's `headersFor`: the identity the interceptor established, as internal headers. */
export function identityHeadersFor(ctx: HandlerContext): Headers | undefined {
  const id = ctx.values.get(identityKey);
  return id ? identityHeaders(id) : undefined;
}

export function authInterceptor(deps: { authenticator: Authenticator; limiter?: CreateRateLimiter; log: Logger }): Interceptor {
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    if (isPublicMethod(service, method)) return next(req);
    let identity: Identity | undefined;
    try {
      identity = await deps.authenticator.authenticate((name) => req.header.get(name) ?? undefined);
      if (!identity) throw new AuthError("missing", MISSING_CREDENTIALS);
      req.contextValues.set(identityKey, identity);
      if (deps.limiter && CREATE_METHODS.has(`${service}/${method}`)) {
        await deps.limiter.check(req.contextValues.get(clientIpKey), identity);
      }
    } catch (e) {
      if (e instanceof AuthError) deps.log.debug({ service, method, reason: e.reason }, "refused credentials");
      throw toConnectError(e, deps.log);
    }
    return next(req);
  };
}
