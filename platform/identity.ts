/**
 * The authenticated caller. Only the gateway authenticates (JWT, API key); it forwards the
 * result to internal services in the IDENTITY_* headers, after stripping any such header a
 * client sent. Internal services trust those headers because the gateway is the only public
 * door; they never take a user id from a request body as identity.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { DomainError } from "./errors.js";

export type IdentityKind = "user" | "api_key";

export interface Identity {
  /** Stable owner id: the JWT `sub`, or the API key's owner. */
  readonly userId: string;
  readonly kind: IdentityKind;
  /** When the credentials expire (epoch ms; a JWT's exp); absent = they do not. Streams end then. */
  readonly expiresAtMs?: number;
}

export const IDENTITY_USER_HEADER = "x-switchboard-user";
export const IDENTITY_KIND_HEADER = "x-switchboard-auth-kind";
/** Every header with this prefix is internal: the gateway drops them from client requests. */
export const INTERNAL_HEADER_PREFIX = "x-switchboard-";

export const identityKey = createContextKey<Identity | undefined>(undefined, { description: "caller identity" });

export function identityHeaders(identity: Identity | undefined): Headers {
  const h = new Headers();
  if (identity) {
    h.set(IDENTITY_USER_HEADER, identity.userId);
    h.set(IDENTITY_KIND_HEADER, identity.kind);
  }
  return h;
}

export function identityFromHeaders(headers: Headers): Identity | undefined {
  const userId = headers.get(IDENTITY_USER_HEADER);
  if (!userId) return undefined;
  const kind = headers.get(IDENTITY_KIND_HEADER) === "api_key" ? "api_key" : "user";
  return { userId, kind };
}

/** The caller of an internal call, from the headers the gateway set. */
export function callerOf(ctx: HandlerContext): Identity | undefined {
  return ctx.values.get(identityKey) ?? identityFromHeaders(ctx.requestHeader);
}

/** For methods that need a caller: Unauthenticated when there is none. */
export function requireCaller(ctx: HandlerContext): Identity {
  const id = callerOf(ctx);
  if (!id) throw new DomainError("Unauthenticated", "this call needs credentials: a bearer token or an API key");
  return id;
}
