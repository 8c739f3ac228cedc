/**
 * Error mapping shared by the grpc-js adapter, the gRPC client and the gateway.
 *
 * - ConnectError passes through (same code and message).
 * - DomainError (platform/errors.ts) becomes the code for its `kind` with its message; the
 *   domain writes those messages for callers. Kind "Internal" is treated like an unknown error.
 * - Anything else becomes INTERNAL "internal error (request id X)"; the stack is logged, never
 *   sent.
 *
 * Retry hint: a DomainError with `details.retryAfterMs` yields a ConnectError whose metadata
 * carries `retry-after-ms: <ms>` (exact) and `retry-after: <seconds, rounded up>` (the HTTP
 * header form). On gRPC (grpc-js adapter) the metadata goes out as trailers with the status; on
 * connect-node it goes out as response headers/trailers; `createGrpcClient` turns received
 * trailers back into `ConnectError.metadata`, so the hint survives an internal hop and the
 * gateway can copy `retry-after` onto its HTTP response (see `retryAfterMsOf`).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { isDomainError, type ErrorKind } from "../errors.js";

export const RETRY_AFTER_MS_HEADER = "retry-after-ms";
export const RETRY_AFTER_HEADER = "retry-after";

const KIND_TO_CODE: Readonly<Record<ErrorKind, Code>> = {
  InvalidArgument: Code.InvalidArgument,
  NotFound: Code.NotFound,
  AlreadyExists: Code.AlreadyExists,
  PermissionDenied: Code.PermissionDenied,
  Unauthenticated: Code.Unauthenticated,
  ResourceExhausted: Code.ResourceExhausted,
  FailedPrecondition: Code.FailedPrecondition,
  Aborted: Code.Aborted,
  Unavailable: Code.Unavailable,
  Unimplemented: Code.Unimplemented,
  DeadlineExceeded: Code.DeadlineExceeded,
  Internal: Code.Internal,
};

export function codeForKind(kind: ErrorKind): Code {
  return KIND_TO_CODE[kind];
}

/** HTTP status for a Connect/gRPC code, as the gateway answers REST-style routes. */
export function httpStatusFor(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
      return 409;
    case Code.FailedPrecondition:
      return 412;
    case Code.ResourceExhausted:
      return 429;
    case Code.Unimplemented:
      return 501;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

const CODE_NAMES: readonly string[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** gRPC status name for a numeric code (0 = "OK"), used as a metrics label. */
export function grpcCodeName(code: number): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/** Generic message sent instead of an unexpected error's own message. */
export function internalMessage(requestId: string | undefined): string {
  return requestId ? `internal error (request id ${requestId})` : "internal error";
}

/**
 * Any thrown value -> ConnectError fit to send. `log` receives unexpected errors with their
 * stack; the request id defaults to the logger's `requestId` binding (see childForCall).
 */
export function toConnectError(e: unknown, log?: Logger, requestId?: string): ConnectError {
  if (e instanceof ConnectError) return e;
  if (isDomainError(e) && e.kind !== "Internal") {
    return new ConnectError(e.message, codeForKind(e.kind), retryHints(e.details.retryAfterMs), undefined, e);
  }
  if (isAbortLike(e)) {
    return new ConnectError("the operation was cancelled", Code.Canceled, undefined, undefined, e);
  }
  const id = requestId ?? requestIdOf(log);
  log?.error({ err: e }, "unhandled error in rpc handler");
  return new ConnectError(internalMessage(id), Code.Internal, undefined, undefined, e);
}

/** Error metadata carrying a retry hint (retry-after-ms and retry-after); empty without a valid one. */
export function retryHints(retryAfterMs: number | undefined): Headers {
  const metadata = new Headers();
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    metadata.set(RETRY_AFTER_MS_HEADER, String(Math.ceil(retryAfterMs)));
    metadata.set(RETRY_AFTER_HEADER, String(Math.ceil(retryAfterMs / 1000)));
  }
  return metadata;
}

/** The retry hint carried by an error's metadata, in ms, if any. */
export function retryAfterMsOf(e: ConnectError): number | undefined {
  const ms = e.metadata.get(RETRY_AFTER_MS_HEADER);
  if (ms !== null && /^\d+$/.test(ms)) return Number(ms);
  const s = e.metadata.get(RETRY_AFTER_HEADER);
  if (s !== null && /^\d+$/.test(s)) return Number(s) * 1000;
  return undefined;
}

function isAbortLike(e: unknown): boolean {
  return e instanceof Error && (e.name === "AbortError" || e.name === "TimeoutError");
}

function requestIdOf(log: Logger | undefined): string | undefined {
  if (!log) return undefined;
  const id: unknown = log.bindings()["requestId"];
  return typeof id === "string" ? id : undefined;
}
