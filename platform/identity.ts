/**
 * The authenticated caller. Only the gateway authenticates (JWT, API key); it hands the result
 * to internal services as a signed identity assertion (platform/identity-assertion.ts) in the
 * IDENTITY_ASSERTION_HEADER, after dropping every `x-switchboard-*` header a client sent.
 * Internal gRPC servers verify the assertion and put the identity in ctx.values (identityKey);
 * nothing else makes a caller: no plain header, and never a user id from a request body.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { DomainError } from "./errors.js";

export type IdentityKind = "user" | "api_key";

export interface Identity {
  /** Stable owner id: the JWT `sub`, or the API key's owner; always a valid id (platform/user-id.ts). */
  readonly userId: string;
  readonly kind: IdentityKind;
  /** When the credential stops being valid (the JWT's exp, in ms since the epoch); undefined for API keys. */
  readonly expiresAtMs?: number;
}

/** Carries the gateway's signed identity assertion to internal services. */
export const IDENTITY_ASSERTION_HEADER = "x-switchboard-identity";
/** Every header with this prefix is internal: the gateway drops them from client requests. */
export const INTERNAL_HEADER_PREFIX = "x-switchboard-";

export const identityKey = createContextKey<Identity | undefined>(undefined, { description: "caller identity" });

/** The caller of a call: the identity verified for it, or undefined (anonymous). */
export function callerOf(ctx: HandlerContext): Identity | undefined {
  return ctx.values.get(identityKey);
}

/** For methods that need a caller: Unauthenticated when there is none. */
export function requireCaller(ctx: HandlerContext): Identity {
  const id = callerOf(ctx);
  if (!id) throw new DomainError("Unauthenticated", "this call needs credentials: a bearer token or an API key");
  return id;
}
