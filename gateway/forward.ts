/**
 * Forwards a public service from the Connect edge to its internal gRPC server. The gateway
 * owns no business logic: each method becomes a call on the upstream grpc-js client with the
 * caller's deadline, cancellation and the headers the upstream is allowed to see. Streaming
 * calls go through the StreamGuard when one is given (per-identity cap, end at token expiry).
 */
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { RETRY_AFTER_HEADER, RETRY_AFTER_MS_HEADER } from "../platform/grpc/status.js";
import { identityKey } from "../platform/identity.js";
import type { StreamGuard } from "./stream-guard.js";

/** Request headers passed through to upstream services; everything else stays at the edge. */
export const FORWARDED_HEADERS = ["x-request-id", "user-agent", "x-forwarded-for"] as const;

export type AnyUpstreamClient = Record<string, (...args: never[]) => unknown>;

export function callOptionsFrom(ctx: HandlerContext, extra?: Headers, signal: AbortSignal = ctx.signal): CallOptions {
  const headers = new Headers(extra);
  for (const name of FORWARDED_HEADERS) {
    const v = ctx.requestHeader.get(name);
    if (v !== null && !headers.has(name)) headers.set(name, v);
  }
  const timeoutMs = ctx.timeoutMs();
  return { signal, headers, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}

/** Upstream transport fields that must not leak into the edge's response as error metadata. */
const TRANSPORT_FIELD = /^(?:content-type|content-length|content-encoding|transfer-encoding|connection|keep-alive|te|trailer|date|grpc-.*|:.*)$/i;

/**
 * An upstream error made fit for the edge: the grpc-js client hands back its trailers as
 * ConnectError metadata (content-type: application/grpc, grpc-status-details-bin, ...); sent
 * as-is they would overwrite the edge's own content-type and break Connect clients. Keeps the
 * code, message and application metadata (retry-after), and turns grpc-status-details-bin into
 * proper error details so Connect and gRPC-web clients see them too.
 */
export function edgeError(e: unknown, service?: string, streamed = false): unknown {
  if (!(e instanceof ConnectError)) return e;
  if (service !== undefined) {
    const sick = sickUpstreamError(e, service, streamed);
    if (sick) return sick;
  }
  let dirty = false;
  const metadata = new Headers();
  e.metadata.forEach((v, k) => {
    if (TRANSPORT_FIELD.test(k)) dirty = true;
    else metadata.set(k, v);
  });
  if (!dirty) return e;
  let details = e.details;
  if (details.length === 0) {
    try {
      details = findTrailerError(e.metadata)?.details ?? [];
    } catch {
      details = [];
    }
  }
  const out = new ConnectError(e.rawMessage, e.code, metadata, undefined, e.cause);
  out.details = details;
  return out;
}

/**
 * An upstream that cannot be reached or cannot serve, said in the edge's words. When the upstream
 * never answered (no response headers: grpc-js made the status up), its text names internal hosts
 * ("No connection established. Last error: connect ECONNREFUSED 10.0.0.7:50052 ... Resolution
 * note") and is replaced by "<service> service is unavailable" (a deadline: "did not answer in
 * time"). A service's own Unavailable is its answer ("token-range service cannot be reached ...")
 * and passes, unless it carries an address or socket error text (a backend driver's detail).
 * The retry hint is kept.
 */
function sickUpstreamError(e: ConnectError, service: string, streamed: boolean): ConnectError | undefined {
  // A stream that already carried messages had its headers long ago: its trailers are its answer.
  const answered = streamed || ANSWERED.has(e) || e.metadata.has("content-type");
  if (e.code === Code.Unavailable && (!answered || INTERNAL_DETAIL.test(e.rawMessage))) {
    const metadata = new Headers();
    for (const k of RETRY_HINTS) {
      const v = e.metadata.get(k);
      if (v !== null) metadata.set(k, v);
    }
    return new ConnectError(`${service} service is unavailable`, Code.Unavailable, metadata, undefined, e);
  }
  if (e.code === Code.DeadlineExceeded && !answered) {
    return new ConnectError(`${service} service did not answer in time`, Code.DeadlineExceeded, undefined, undefined, e);
  }
  return undefined;
}

/** Errors made at the edge from an upstream's own answer (a relayed stream's end, gateway/chat-relay.ts). */
const ANSWERED = new WeakSet<ConnectError>();

/** Marks an error as the upstream's answer: passed to the client as it is, not as "unavailable". */
export function markAnswered(e: ConnectError): ConnectError {
  ANSWERED.add(e);
  return e;
}

/** An IPv4/IPv6 literal, a host:port, or Node/grpc-js socket and resolver text. */
const INTERNAL_DETAIL = /\b\d{1,3}(?:\.\d{1,3}){3}\b|\[[0-9a-f:]+\]|[\w\].-]:\d{2,5}\b|\bE(?:CONNREFUSED|CONNRESET|HOSTUNREACH|NETUNREACH|TIMEDOUT|AI_AGAIN|NOTFOUND)\b|Resolution note|No connection established/i;

const RETRY_HINTS = [RETRY_AFTER_HEADER, RETRY_AFTER_MS_HEADER] as const;

/** Longest a call waits for a connection to its upstream before answering Unavailable. */
export const UPSTREAM_CONNECT_TIMEOUT_MS = 1_000;

/**
 * Bounds the wait for a connection (a grpc-js channel waits for the call's deadline, possibly
 * none, when the upstream accepts TCP and never answers). A no-op for clients without the probe.
 */
export async function connected(upstream: object, timeoutMs = UPSTREAM_CONNECT_TIMEOUT_MS): Promise<void> {
  const within = (upstream as { connectedWithin?: (ms: number) => Promise<boolean> }).connectedWithin;
  if (typeof within !== "function") return;
  if (!(await within.call(upstream, timeoutMs))) throw new ConnectError("upstream not connected", Code.Unavailable);
}

export interface ForwardingOptions {
  /** Named in the error when the upstream cannot be reached ("chat service is unavailable"). */
  readonly service?: string;
  /** Applied to every server-streaming and bidi method. */
  readonly streams?: StreamGuard;
}

export function forwardingImpl<S extends DescService>(
  desc: S,
  upstream: AnyUpstreamClient,
  headersFor: (ctx: HandlerContext) => Headers | undefined = () => undefined,
  options: ForwardingOptions = {},
): ServiceImpl<S> {
  const impl: Record<string, unknown> = {};
  for (const method of desc.methods) {
    const call = upstream[method.localName] as unknown as (input: unknown, options: CallOptions) => unknown;
    if (typeof call !== "function") continue;
    const opts = (ctx: HandlerContext, signal?: AbortSignal): CallOptions => callOptionsFrom(ctx, headersFor(ctx), signal);
    const stream = (input: unknown, ctx: HandlerContext): AsyncIterable<unknown> => {
      const guard = options.streams;
      if (!guard) return call(input, opts(ctx)) as AsyncIterable<unknown>;
      return guard.run(ctx.values.get(identityKey), ctx.signal, (signal) => call(input, opts(ctx, signal)) as AsyncIterable<unknown>);
    };
    switch (method.methodKind) {
      case "server_streaming":
      case "bidi_streaming":
        impl[method.localName] = async function* (input: unknown, ctx: HandlerContext) {
          let streamed = false;
          try {
            await connected(upstream);
            for await (const m of stream(input, ctx)) {
              streamed = true;
              yield m;
            }
          } catch (e) {
            throw edgeError(e, options.service, streamed);
          }
        };
        break;
      default: // unary and client streaming both resolve to one response
        impl[method.localName] = async (input: unknown, ctx: HandlerContext) => {
          try {
            await connected(upstream);
            return await call(input, opts(ctx));
          } catch (e) {
            throw edgeError(e, options.service);
          }
        };
    }
  }
  return impl as ServiceImpl<S>;
}
