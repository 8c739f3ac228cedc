/**
 * Domain errors. Domain code throws these; only the rpc and HTTP edges turn them into
 * gRPC/Connect codes and HTTP statuses (see platform/grpc/status.ts and gateway/).
 */
export type ErrorKind =
  | "InvalidArgument"
  | "NotFound"
  | "AlreadyExists"
  | "PermissionDenied"
  | "Unauthenticated"
  | "ResourceExhausted"
  | "FailedPrecondition"
  | "Aborted"
  | "Unavailable"
  | "Unimplemented"
  | "DeadlineExceeded"
  | "Internal";

export interface ErrorDetails {
  /** The request field the error is about, e.g. "long_url". */
  readonly field?: string;
  /** For ResourceExhausted/Unavailable: when the caller may try again. */
  readonly retryAfterMs?: number;
}

export class DomainError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly details: ErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = `${kind}Error`;
  }
}

export const invalidArgument = (field: string, reason: string): DomainError =>
  new DomainError("InvalidArgument", `${field}: ${reason}`, { field });

export const notFound = (what: string): DomainError => new DomainError("NotFound", `${what} not found`);

export const unavailable = (what: string, cause?: unknown): DomainError =>
  new DomainError("Unavailable", `${what} is unavailable`, {}, { cause });

export const unimplemented = (method: string, note = "not implemented yet"): DomainError =>
  new DomainError("Unimplemented", `${method} is ${note}`);

export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}
