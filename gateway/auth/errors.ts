import { DomainError } from "../../platform/errors.js";

/** Why a credential was refused; the message says it to the caller. */
export type AuthFailure =
  | "missing"
  | "malformed"
  | "unsupported_alg"
  | "bad_signature"
  | "unknown_key"
  | "expired"
  | "missing_exp"
  | "lifetime_too_long"
  | "invalid_subject"
  | "not_yet_valid"
  | "wrong_issuer"
  | "wrong_audience"
  | "revoked";

/** Unauthenticated (401) with a reason; anything else about a key source failing is Unavailable. */
export class AuthError extends DomainError {
  constructor(
    readonly reason: AuthFailure,
    message: string,
  ) {
    super("Unauthenticated", message);
  }
}

export const MISSING_CREDENTIALS =
  "this call needs credentials: send 'Authorization: Bearer <jwt>' or an API key ('x-api-key: sb_...' or 'Authorization: ApiKey sb_...')";
