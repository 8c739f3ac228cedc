/**
 * The gateway's Connect / gRPC / gRPC-web handler (in place of connectNodeAdapter), so that work
 * happens in the order an attacker cannot exploit:
 *
 * 1. the method from the path; unknown paths go to the fallback;
 * 2. credentials from the headers (the admission), before any body byte is read: a refused
 *    call answers in its own protocol, its body is never inflated or decoded;
 * 3. the body through the guard (body-guard.ts): the method's size limit on compressed and
 *    inflated bytes, malformed messages refused as InvalidArgument;
 * 4. connect decodes and runs the interceptors and the implementation.
 *
 * Refusals reach the client through connect itself: the request body handed to it throws the
 * refusal on first read, and connect turns a ConnectError from the body into the protocol's
 * error (Connect JSON with the HTTP status, gRPC trailers, gRPC-web trailer frame). Only a Connect
 * GET, whose message is in the query, is answered here directly.
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextValues,
  type ContextValues,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import type { Logger } from "pino";
import type { Admission } from "./auth/admission.js";
import { ACCEPT_COMPRESSION, bodyShapeOf, checkGetMessage, guardBody } from "./body-guard.js";
import type { MessageLimits } from "./rpc-limits.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

export interface RpcService {
  readonly desc: DescService;
  readonly impl: ServiceImpl<DescService>;
}

export interface RpcHandlerOptions {
  readonly services: readonly RpcService[];
  readonly limits: MessageLimits;
  readonly interceptors?: readonly Interceptor[];
  readonly contextValues?: (req: Req) => ContextValues;
  /** Absent: every call is admitted (the interceptors decide). */
  readonly admission?: Admission;
  readonly fallback: (req: Req, res: Res) => void;
  readonly log: Logger;
}

interface Route {
  readonly handler: UniversalHandler;
  readonly service: DescService;
  readonly method: DescMethod;
  readonly readMaxBytes: number;
}

export type RpcHandler = (req: Req, res: Res) => void;

export function createRpcHandler(opts: RpcHandlerOptions): RpcHandler {
  const router = createConnectRouter({
    acceptCompression: [...ACCEPT_COMPRESSION],
    ...(opts.interceptors ? { interceptors: [...opts.interceptors] } : {}),
  });
  const routes = new Map<string, Route>();
  for (const { desc, impl } of opts.services) {
    for (const method of desc.methods) {
      const readMaxBytes = opts.limits.readMaxBytes(desc, method);
      const before = router.handlers.length;
      router.rpc(method, implOf(desc, impl, method) as never, { readMaxBytes });
      const handler = router.handlers[before]!;
      routes.set(handler.requestPath, { handler, service: desc, method, readMaxBytes });
    }
  }

  const serve = async (route: Route, req: Req, res: Res): Promise<void> => {
    // Connect builds the request URL from the authority; HTTP/1.0 may leave it out.
    if (("authority" in req ? req.authority : req.headers.host) === undefined) {
      return writeConnectUnaryError(res, new ConnectError("the request has no Host header", Code.InvalidArgument));
    }
    const values = opts.contextValues?.(req) ?? createContextValues();
    const refusal = await opts.admission?.(route.service.typeName, route.method.name, headerReader(req), values);
    const uReq = universalRequestFromNodeRequest(req as http.IncomingMessage, res as http.ServerResponse, undefined, values);
    const isGet = req.method === "GET" && route.method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
    let body: UniversalServerRequest["body"];
    let header = uReq.header;
    if (isGet) {
      const error = refusal ?? (await checkGetMessage(route.method.input, new URL(uReq.url).searchParams, route.readMaxBytes));
      if (error) return writeConnectUnaryError(res, error);
      body = uReq.body;
    } else if (refusal) {
      body = refusing(refusal);
      // Connect checks a declared length against the limit before reading: the refusal must win.
      header = new Headers(uReq.header);
      header.delete("content-length");
    } else {
      const shape = bodyShapeOf(uReq.header.get("content-type"));
      body = shape
        ? guardBody(uReq.body as AsyncIterable<Uint8Array>, shape, {
            input: route.method.input,
            readMaxBytes: route.readMaxBytes,
            encoding: uReq.header.get(shape.encodingHeader),
            contentLength: uReq.header.get("content-length"),
          })
        : uReq.body;
    }
    let uRes = await route.handler({ ...uReq, header, body });
    // HTTP/1.1 can only skip an unread body by closing the connection after the answer (HTTP/2
    // flow control already caps what a client can push into a stream nobody reads).
    if (!("stream" in req)) {
      if (refusal !== undefined && !req.complete) uRes.header?.set("connection", "close");
      else uRes = closingAfterUnreadBody(uRes, req as http.IncomingMessage);
    }
    await universalResponseToNodeResponse(uRes, res as http.ServerResponse);
  };

  return (req, res) => {
    const route = routes.get((req.url ?? "").split("?", 1)[0]!);
    if (!route) return opts.fallback(req, res);
    serve(route, req, res).catch((e: unknown) => {
      if (ConnectError.from(e).code === Code.Aborted) return;
      opts.log.error({ err: e, service: route.service.typeName, method: route.method.name }, "rpc handler failed");
      if (!res.headersSent) writeConnectUnaryError(res, new ConnectError("internal error", Code.Internal));
      else res.end();
    });
  };
}

/**
 * A body refused part-way (a message over the size limit, found while reading) is still on the
 * connection when the answer starts; Node does not skip a body that was partly consumed, so a
 * keep-alive connection would hang the client's next request. The answer's headers go out with
 * its first chunk, after the read failed: mark the connection to close then.
 */
function closingAfterUnreadBody(uRes: UniversalServerResponse, req: http.IncomingMessage): UniversalServerResponse {
  const body = uRes.body;
  if (!body || !uRes.header || !(Symbol.asyncIterator in body)) return uRes;
  const header = uRes.header;
  return {
    ...uRes,
    body: (async function* () {
      let first = true;
      for await (const chunk of body) {
        if (first && !req.complete) header.set("connection", "close");
        first = false;
        yield chunk;
      }
    })(),
  };
}

function implOf(desc: DescService, impl: ServiceImpl<DescService>, method: DescMethod): unknown {
  const fn = (impl as Record<string, unknown>)[method.localName];
  if (typeof fn === "function") return fn.bind(impl);
  const message = `${desc.typeName}.${method.name} is not implemented`;
  return () => {
    throw new ConnectError(message, Code.Unimplemented);
  };
}

export function headerReader(req: Req): (name: string) => string | undefined {
  return (name) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  };
}

/** A request body that is never read from the socket: its first read fails with the refusal. */
function refusing(refusal: ConnectError): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.reject(refusal),
    }),
  };
}

function writeConnectUnaryError(res: Res, error: ConnectError): void {
  const headers: Record<string, string> = { "content-type": "application/json" };
  error.metadata.forEach((v, k) => (headers[k] = v));
  const body = errorToJsonBytes(error, {});
  headers["content-length"] = String(body.byteLength);
  res.writeHead(codeToHttpStatus(error.code), headers);
  res.end(body);
}
