/**
 * A service's unary calls over gRPC (HTTP/2) and gRPC-web (protobuf) served without connect-node,
 * for ChatService, whose SendMessage is the mesh's busiest call. Through connect-node a call
 * cost the embedded mesh about a third of its CPU in the framework (an AbortSignal made and
 * aborted per call, async-iterable plumbing, header objects, and the garbage they leave:
 * bench/README.md, "Where the embedded mesh's CPU goes").
 *
 * The same order and answers as the Connect path (rpc-handler.ts, forward.ts): credentials from
 * the headers before a body byte is read (the admission), the body through the same guard
 * (method size limit, malformed messages as InvalidArgument), exactly one request message, the
 * call upstream with the caller's identity asserted for that method and the forwarded headers,
 * upstream errors in the edge's words (edgeError); the answer in the 5-byte envelope and the end
 * as gRPC trailers or the gRPC-web trailer frame. Left to connect-node (not claimed): the Connect
 * protocol and JSON, gRPC-web text, compressed requests, gRPC over HTTP/1.1, streaming methods
 * and the service's internal methods. A deadline (grpc-timeout) is applied as connect-node does:
 * the call upstream carries it, and DeadlineExceeded answers when it passes.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type CallOptions, type ContextValues } from "@connectrpc/connect";
import { createMethodSerializationLookup, encodeEnvelope } from "@connectrpc/connect/protocol";
import { parseTimeout } from "@connectrpc/connect/protocol-grpc";
import type { Logger } from "pino";
import { toConnectError } from "../platform/grpc/status.js";
import { identityKey, type Identity } from "../platform/identity.js";
import type { Admission } from "./auth/admission.js";
import { AuthError, MISSING_CREDENTIALS } from "./auth/errors.js";
import { isPublicMethod } from "./auth/interceptor.js";
import { closeIfUnread, endCall, readOneMessage, runClaimed, upstreamHeaders, wireOf, type Req, type Res, type Wire } from "./door-wire.js";
import { connected, edgeError, type AnyUpstreamClient } from "./forward.js";
import type { HttpDoor } from "./gateway.js";
import { headerReader } from "./rpc-handler.js";
import type { MessageLimits } from "./rpc-limits.js";

export interface UnaryDoorOptions {
  readonly desc: DescService;
  /** What the Connect path forwards to (the same object: the same placement and clients). */
  readonly upstream: AnyUpstreamClient;
  /** Named in "<service> service is unavailable". */
  readonly service: string;
  /** Methods the edge refuses: not claimed here, so the Connect path answers them as it does. */
  readonly internalMethods?: readonly string[];
  /** Absent: no call is admitted with an identity (non-public methods are refused). */
  readonly admission?: Admission;
  readonly contextValues?: (req: Req) => ContextValues;
  readonly limits: MessageLimits;
  /** The internal headers proving `identity` to the upstream for the method at `path`. */
  readonly assertionFor: (identity: Identity, path: string) => Headers;
}

interface Route {
  readonly path: string;
  readonly method: DescMethod;
  readonly readMaxBytes: number;
  readonly input: { parse(data: Uint8Array): unknown };
  readonly output: { serialize(message: unknown): Uint8Array };
  readonly call: (input: unknown, options: CallOptions) => Promise<unknown>;
}

export function unaryDoor(opts: UnaryDoorOptions): HttpDoor {
  const routes = new Map<string, Route>();
  for (const method of opts.desc.methods) {
    if (method.methodKind !== "unary" || opts.internalMethods?.includes(method.name)) continue;
    const call = opts.upstream[method.localName] as unknown as Route["call"] | undefined;
    if (typeof call !== "function") continue;
    const readMaxBytes = opts.limits.readMaxBytes(opts.desc, method);
    const lookup = createMethodSerializationLookup(method, undefined, undefined, { readMaxBytes, writeMaxBytes: 0xffffffff });
    const path = `/${opts.desc.typeName}/${method.name}`;
    routes.set(path, {
      path,
      method,
      readMaxBytes,
      input: lookup.getI(true),
      output: lookup.getO(true) as Route["output"],
      call: call.bind(opts.upstream),
    });
  }
  return (req, res, log) => {
    if (req.method !== "POST") return false;
    const route = routes.get(req.url ?? "");
    if (!route) return false;
    const how = wireOf(req, { deadlines: true });
    if (!how || how.wire === "connect") return false;
    runClaimed("unary", res, log, serve(opts, route, req, res, how.wire, how.contentType, log));
    return true;
  };
}

async function serve(opts: UnaryDoorOptions, route: Route, req: Req, res: Res, wire: Wire, contentType: string, log: Logger): Promise<void> {
  const answer = (error: ConnectError | undefined, message?: Uint8Array): void => {
    if (res.writableEnded || res.destroyed) return;
    if (error?.code === Code.Internal) log.error({ err: error.cause ?? error }, "unary call ended with an internal error");
    res.writeHead(200, { "content-type": contentType });
    if (message) (res as import("node:http").ServerResponse).write(encodeEnvelope(0, message));
    endCall(res, wire, error);
  };
  const header = headerReader(req);
  // No maximum, as connect-node (the gateway sets none).
  const deadline = parseTimeout(header("grpc-timeout") ?? null, Number.MAX_SAFE_INTEGER);
  if (deadline.error) {
    closeIfUnread(req, res);
    return answer(deadline.error);
  }
  const values = opts.contextValues?.(req) ?? createContextValues();
  const refusal = await opts.admission?.(opts.desc.typeName, route.method.name, header, values);
  if (refusal) {
    closeIfUnread(req, res);
    return answer(refusal);
  }
  const identity = values.get(identityKey);
  if (!identity && !isPublicMethod(opts.desc.typeName, route.method.name)) {
    closeIfUnread(req, res);
    return answer(toConnectError(new AuthError("missing", MISSING_CREDENTIALS), log));
  }
  let input: unknown;
  try {
    input = await readOneMessage(req, contentType, route.method.input, route.readMaxBytes, route.input, "unary");
  } catch (e) {
    closeIfUnread(req, res);
    return answer(ConnectError.from(e, Code.InvalidArgument));
  }
  const headers = upstreamHeaders(req, identity ? opts.assertionFor(identity, route.path) : new Headers());
  // The client leaving, or its deadline passing, cancels the upstream call, as connect-node's
  // handler signal does; the deadline also goes upstream with the call.
  const abort = new AbortController();
  const left = (): void => {
    if (!res.writableEnded) abort.abort();
  };
  res.once("close", left);
  const timeoutMs = deadline.timeoutMs;
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => abort.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
  try {
    await connected(opts.upstream);
    const output = await route.call(input, { headers, signal: abort.signal, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    answer(undefined, route.output.serialize(output));
  } catch (e) {
    const reason: unknown = abort.signal.reason;
    answer(reason instanceof ConnectError ? reason : ConnectError.from(edgeError(e, opts.service)));
  } finally {
    clearTimeout(timer);
    res.off("close", left);
  }
}
