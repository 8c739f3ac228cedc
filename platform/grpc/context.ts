/**
 * Per-call values every handler can read from `ctx.values`, whatever the transport (grpc-js
 * adapter or connect-node): the call's child logger and its request id. Interceptors add their
 * own keys (e.g. the caller identity) the same way.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";

/**
 * The per-call child logger (service, method, requestId bound), as a getter so it is only built
 * when a handler logs. Undefined outside a call. Read it with `callLog(ctx, fallback)`.
 */
export const callLogKey = createContextKey<(() => Logger) | undefined>(undefined, { description: "call logger" });

/** The request id of the call (from `x-request-id` or generated). */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

/** The call's logger, or `fallback` when the transport did not set one (e.g. unit tests). */
export function callLog(ctx: HandlerContext, fallback: Logger): Logger {
  return ctx.values.get(callLogKey)?.() ?? fallback;
}
