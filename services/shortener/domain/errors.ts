/** Shortener refusals: a DomainError plus the machine-readable reason (LinkErrorReason name). */
import { DomainError, type ErrorKind } from "../../../platform/errors.js";

export type LinkReason =
  | "URL_INVALID"
  | "URL_SCHEME_NOT_ALLOWED"
  | "URL_TOO_LONG"
  | "URL_HAS_CREDENTIALS"
  | "URL_SELF_REFERENCE"
  | "URL_DOMAIN_BLOCKED"
  | "ALIAS_INVALID"
  | "ALIAS_RESERVED"
  | "ALIAS_TAKEN"
  | "EXPIRE_TIME_INVALID"
  | "IDEMPOTENCY_KEY_REUSED"
  | "ITEM_ID_INVALID"
  | "RATE_LIMITED";

export class LinkError extends DomainError {
  constructor(
    kind: ErrorKind,
    readonly reason: LinkReason | undefined,
    field: string,
    message: string,
  ) {
    super(kind, `${field}: ${message}`, { field });
  }
}

export const refuse = (reason: LinkReason, field: string, message: string): LinkError =>
  new LinkError("InvalidArgument", reason, field, message);

export const badField = (field: string, message: string): LinkError => new LinkError("InvalidArgument", undefined, field, message);
