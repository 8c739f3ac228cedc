/**
 * What the gateway's own doors (subscribe-door.ts, unary-door.ts) share with each other and with
 * the Connect path: which requests they may serve, the one request message read through the body
 * guard, and a call's end in the protocol's own form (gRPC trailers, the gRPC-web trailer frame,
 * Connect's EndStream) with the status, message, details and retry hints; who the caller of a
 * streaming door is and what goes upstream with its call.
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { endStreamFlag, endStreamToJson } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { Logger } from "pino";
import { toConnectError } from "../platform/grpc/status.js";
import { identityKey, type Identity } from "../platform/identity.js";
import type { Admission } from "./auth/admission.js";
import { AuthError, MISSING_CREDENTIALS } from "./auth/errors.js";
import { bodyShapeOf, guardBody } from "./body-guard.js";
import { FORWARDED_HEADERS } from "./forward.js";
import { headerReader } from "./rpc-handler.js";
import type { StreamGuard } from "./stream-guard.js";

export type Req = http.IncomingMessage | http2.Http2ServerRequest;
export type Res = http.ServerResponse | http2.Http2ServerResponse;

export type Wire = "grpc" | "grpc-web" | "connect";

const WIRES: Readonly<Record<string, Wire>> = {
  "application/grpc": "grpc",
  "application/grpc+proto": "grpc",
  "application/grpc-web": "grpc-web",
  "application/grpc-web+proto": "grpc-web",
  "application/connect+proto": "connect",
  "application/connect+json": "connect",
};

/**
 * The protocol (and content type) of a request a door may serve, or undefined to leave it to
 * connect-node: gRPC over HTTP/1.1, compressed requests, Connect protocol versions other than 1,
 * and deadline headers unless the door applies them (`deadlines`).
 */
export function wireOf(req: Req, opts: { readonly deadlines?: boolean } = {}): { wire: Wire; contentType: string } | undefined {
  const contentType = String(req.headers["content-type"] ?? "").split(";", 1)[0]!.trim().toLowerCase();
  const wire = WIRES[contentType];
  if (wire === undefined) return undefined;
  if (wire === "grpc" && req.httpVersionMajor !== 2) return undefined;
  const encoding = req.headers[wire === "connect" ? "connect-content-encoding" : "grpc-encoding"];
  if (encoding !== undefined && encoding !== "identity") return undefined;
  if (!opts.deadlines && (req.headers["grpc-timeout"] !== undefined || req.headers["connect-timeout-ms"] !== undefined)) return undefined;
  const version = req.headers["connect-protocol-version"];
  if (version !== undefined && version !== "1") return undefined;
  return { wire, contentType };
}

/** HTTP/1.1 can only skip an unread body by closing the connection after the answer. */
export function closeIfUnread(req: Req, res: Res): void {
  if (!("stream" in req) && !req.complete) res.setHeader("connection", "close");
}

/** The one request message, through the Connect path's body guard. */
export async function readOneMessage<D extends DescMessage>(
  req: Req,
  contentType: string,
  input: D,
  readMaxBytes: number,
  parser: { parse(data: Uint8Array): unknown },
  kind: string,
): Promise<MessageShape<D>> {
  let message: MessageShape<D> | undefined;
  const envelopes = guardBody(req as AsyncIterable<Uint8Array>, bodyShapeOf(contentType)!, { input, readMaxBytes, encoding: null });
  for await (const envelope of envelopes) {
    if (envelope[0] !== 0) throw new ConnectError(`protocol error: unexpected envelope flags ${envelope[0]}`, Code.InvalidArgument);
    if (message !== undefined) throw new ConnectError(`protocol error: received extra input message for ${kind} method`, Code.InvalidArgument);
    message = parser.parse(envelope.subarray(5)) as MessageShape<D>;
  }
  if (message === undefined) throw new ConnectError(`protocol error: missing input message for ${kind} method`, Code.InvalidArgument);
  return message;
}

/** Ends the response with `error` (undefined: OK) in the protocol's own way. */
export function endCall(res: Res, wire: Wire, error: ConnectError | undefined): void {
  switch (wire) {
    case "grpc": {
      const trailers: Record<string, string> = {};
      setTrailerStatus(new Headers(), error).forEach((v, k) => (trailers[k] = v));
      (res as http2.Http2ServerResponse).addTrailers(trailers);
      res.end();
      break;
    }
    case "grpc-web":
      res.end(encodeEnvelope(trailerFlag, trailerSerialize(setTrailerStatus(new Headers(), error))));
      break;
    case "connect":
      res.end(encodeEnvelope(endStreamFlag, Buffer.from(JSON.stringify(endStreamToJson(new Headers(), error, undefined)))));
      break;
  }
}

/** A call a door claimed, run to its end: a failure of the door itself is logged and answered 500, never left hanging. */
export function runClaimed(door: string, res: Res, log: Logger, call: Promise<void>): void {
  call.catch((e: unknown) => {
    log.error({ err: e }, `${door} door failed`);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  });
}

/**
 * The caller of a stream (identity required), from the headers before a body byte is read: the
 * admission's refusal, Unauthenticated without credentials, or the identity.
 */
export async function streamCaller(
  admission: Admission | undefined,
  values: ContextValues,
  req: Req,
  service: string,
  method: string,
  log: Logger,
): Promise<Identity | ConnectError> {
  const refusal = await admission?.(service, method, headerReader(req), values);
  if (refusal) return refusal;
  return values.get(identityKey) ?? toConnectError(new AuthError("missing", MISSING_CREDENTIALS), log);
}

/** What goes upstream with a door's call: `assertion` (proof of the caller) and the forwarded request headers, nothing else. */
export function upstreamHeaders(req: Req, assertion: Headers): Headers {
  for (const name of FORWARDED_HEADERS) {
    const v = req.headers[name];
    if (typeof v === "string") assertion.set(name, v);
  }
  return assertion;
}

/** What a streaming door (Subscribe, Session) is given besides its placement. */
export interface StreamDoorOptions {
  /** Absent: no call is admitted with an identity (every stream is refused as unauthenticated). */
  readonly admission?: Admission;
  readonly contextValues?: (req: Req) => ContextValues;
  readonly streams: StreamGuard;
  /** Largest request message (rpc-limits.ts's for the method). */
  readonly readMaxBytes: number;
  /** The internal headers proving `identity` to the chat server for the method. */
  readonly assertionFor: (identity: Identity) => Headers;
}
