/**
 * The gateway's Connect interceptor: requires the identity the admission (admission.ts)
 * established from the headers before the body was read, for every non-public call (forwarded
 * upstream by forwardingImpl's `headersFor`, see `identityHeadersFor`), and applies the
 * link-creation rate limits.
 *
 * Public (no credentials needed, credentials ignored): RedirectService/Resolve, gRPC server
 * reflection (v1, v1alpha) and gRPC health. Everything else answers Unauthenticated without
 * valid credentials.
 */
import { createContextKey, createContextValues, type ConnectError, type ContextValues, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type http from "node:http";
import type http2 from "node:http2";
import type { KeyObject } from "node:crypto";
import type { Logger } from "pino";
import { toConnectError } from "../../platform/grpc/status.js";
import { signIdentityAssertion } from "../../platform/identity-assertion.js";
import { IDENTITY_ASSERTION_HEADER, identityKey, type Identity } from "../../platform/identity.js";
import { clientIpOf, type CreateRateLimiter } from "../rate-limit.js";
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

/** Why the admission (admission.ts) refused a call; streams reach the interceptor, which answers with it. */
export const refusalKey = createContextKey<ConnectError | undefined>(undefined, { description: "auth refusal" });

/** For the RPC handler's `contextValues`: records the client address per call. */
export function clientContextValues(trustProxyHops: number): (req: http.IncomingMessage | http2.Http2ServerRequest) => ContextValues {
  return (req) => {
    const values = createContextValues();
    values.set(clientIpKey, clientIpOf(req, trustProxyHops));
    return values;
  };
}

/** The internal headers proving `identity` to the service serving `methodPath` (`/pkg.Service/Method`). */
export function identityAssertionHeaders(meshKey: KeyObject, identity: Identity, methodPath: string): Headers {
  return new Headers({ [IDENTITY_ASSERTION_HEADER]: signIdentityAssertion(meshKey, identity, methodPath) });
}

/**
 * forwardingImpl's `headersFor`: the identity the interceptor established, signed for the method
 * being forwarded (the upstream path equals the public one: the gateway forwards method for method).
 */
export function identityHeadersFor(meshKey: KeyObject): (ctx: HandlerContext) => Headers | undefined {
  return (ctx) => {
    const id = ctx.values.get(identityKey);
    return id ? identityAssertionHeaders(meshKey, id, `/${ctx.service.typeName}/${ctx.method.name}`) : undefined;
  };
}

export function authInterceptor(deps: { limiter?: CreateRateLimiter; log: Logger }): Interceptor {
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    if (isPublicMethod(service, method)) return next(req);
    // Streams reach interceptors before their first message is read: answer with the
    // admission's reason, and never let a call without an admitted identity through.
    const identity = req.contextValues.get(identityKey);
    if (!identity) {
      throw req.contextValues.get(refusalKey) ?? toConnectError(new AuthError("missing", MISSING_CREDENTIALS), deps.log);
    }
    if (deps.limiter && CREATE_METHODS.has(`${service}/${method}`)) {
      try {
        await deps.limiter.check(req.contextValues.get(clientIpKey), identity);
      } catch (e) {
        throw toConnectError(e, deps.log);
      }
    }
    return next(req);
  };
}
