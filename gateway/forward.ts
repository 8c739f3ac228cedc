/**
 * Forwards a public service from the Connect edge to its internal gRPC server. The gateway
 * owns no business logic: each method becomes a call on the upstream grpc-js client with the
 * caller's deadline, cancellation and the headers the upstream is allowed to see.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { CallOptions, HandlerContext, ServiceImpl } from "@connectrpc/connect";

/** Request headers passed through to upstream services; everything else stays at the edge. */
const FORWARDED_HEADERS = ["x-request-id", "user-agent", "x-forwarded-for"] as const;

export type AnyUpstreamClient = Record<string, (...args: never[]) => unknown>;

export function callOptionsFrom(ctx: HandlerContext, extra?: Headers): CallOptions {
  const headers = new Headers(extra);
  for (const name of FORWARDED_HEADERS) {
    const v = ctx.requestHeader.get(name);
    if (v !== null && !headers.has(name)) headers.set(name, v);
  }
  const timeoutMs = ctx.timeoutMs();
  return { signal: ctx.signal, headers, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}

export function forwardingImpl<S extends DescService>(
  desc: S,
  upstream: AnyUpstreamClient,
  headersFor: (ctx: HandlerContext) => Headers | undefined = () => undefined,
): ServiceImpl<S> {
  const impl: Record<string, unknown> = {};
  for (const method of desc.methods) {
    const call = upstream[method.localName] as unknown as (input: unknown, options: CallOptions) => unknown;
    if (typeof call !== "function") continue;
    const opts = (ctx: HandlerContext): CallOptions => callOptionsFrom(ctx, headersFor(ctx));
    switch (method.methodKind) {
      case "server_streaming":
        impl[method.localName] = async function* (req: unknown, ctx: HandlerContext) {
          yield* call(req, opts(ctx)) as AsyncIterable<unknown>;
        };
        break;
      case "bidi_streaming":
        impl[method.localName] = async function* (reqs: AsyncIterable<unknown>, ctx: HandlerContext) {
          yield* call(reqs, opts(ctx)) as AsyncIterable<unknown>;
        };
        break;
      default: // unary and client streaming both resolve to one response
        impl[method.localName] = (input: unknown, ctx: HandlerContext) => call(input, opts(ctx));
    }
  }
  return impl as ServiceImpl<S>;
}
