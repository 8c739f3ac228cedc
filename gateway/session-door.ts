/**
 * ChatService/Session (bidi) over gRPC on HTTP/2 served without connect-node: native clients'
 * one stream for sending and receiving. Through connect-node every frame each way was decoded,
 * re-encoded and carried through async generators (about 0.4 ms of gateway CPU per message in the
 * cross-server delivery benchmark: bench/README.md). Here frames pass as bytes: a request frame is
 * checked by the body guard (size limit, a valid SessionRequest in protobuf binary, else
 * InvalidArgument) and its bytes go upstream as they came; the chat server's frames go to the
 * client as it wrote them.
 *
 * The same order and answers as the Connect path (rpc-handler.ts, forward.ts): credentials from
 * the headers before a frame is read (the admission), the stream guard (per-identity cap, token
 * expiry, drain), the placement (ChatPlacement.openRaw, a lane of the chosen server), the caller's
 * identity asserted for Session and the forwarded headers only, upstream errors in the edge's
 * words (edgeError). Flow control holds both ways: a client that stops reading pauses the upstream
 * call (whose own outbox then ends it as a slow consumer), an upstream that stops reading pauses
 * the client's frames. Left to connect-node (not claimed): Connect and gRPC-web (HTTP/1.1 cannot
 * carry bidi), JSON, compressed requests and calls with a deadline header.
 */
import http2 from "node:http2";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { status as Status, type StatusObject } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ChatService, SessionRequestSchema } from "../gen/switchboard/chat/v1/chat_pb.js";
import { fromStatus } from "../platform/grpc/client.js";
import { RETRY_AFTER_MS_HEADER } from "../platform/grpc/status.js";
import { bodyShapeOf, guardBody } from "./body-guard.js";
import type { RawCall } from "./chat-placement.js";
import { endCall, runClaimed, streamCaller, upstreamHeaders, wireOf, type Req, type Res, type StreamDoorOptions } from "./door-wire.js";
import { edgeError } from "./forward.js";
import type { HttpDoor } from "./gateway.js";

const SERVER_RESET = new ConnectError("the chat server reset the session: reconnect (with backoff) and Sync from your cursor", Code.Unavailable, {
  [RETRY_AFTER_MS_HEADER]: "0",
});

export const SESSION_PATH = `/${ChatService.typeName}/${ChatService.method.session.name}`;

export interface SessionDoorOptions extends StreamDoorOptions {
  readonly open: (headers: Headers, closed: (reason: ConnectError) => void) => Promise<RawCall>;
}

export function sessionDoor(opts: SessionDoorOptions): HttpDoor {
  return (req, res, log) => {
    if (req.method !== "POST" || req.url !== SESSION_PATH) return false;
    const how = wireOf(req);
    if (!how || how.wire !== "grpc") return false;
    runClaimed("session", res, log, serve(opts, req, res, how.contentType, log));
    return true;
  };
}

async function serve(opts: SessionDoorOptions, req: Req, res: Res, contentType: string, log: Logger): Promise<void> {
  const session = new SessionStream(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, contentType, log);
  res.once("close", session.gone);
  const caller = await streamCaller(opts.admission, opts.contextValues?.(req) ?? createContextValues(), req, ChatService.typeName, "Session", log);
  if (caller instanceof ConnectError) return session.finish(caller);
  if (session.over) return;
  try {
    session.release = opts.streams.admit(caller, (reason) => session.finish(reason));
  } catch (e) {
    return session.finish(ConnectError.from(e));
  }
  const headers = upstreamHeaders(req, opts.assertionFor(caller));
  let upstream: RawCall;
  try {
    upstream = await opts.open(headers, (reason) => session.finish(reason));
  } catch (e) {
    return session.finish(ConnectError.from(edgeError(e, "chat")));
  }
  if (!session.attach(upstream)) return;
  const frames = guardBody(req as AsyncIterable<Uint8Array>, bodyShapeOf(contentType)!, { input: SessionRequestSchema, readMaxBytes: opts.readMaxBytes, encoding: null });
  try {
    for await (const frame of frames) {
      if (session.over) return;
      if (!upstream.call.write(frame.subarray(5))) await session.upstreamDrained();
    }
    if (!session.over) upstream.call.end();
  } catch (e) {
    // A client that left ends its body early: the stream is over already and this is ignored.
    session.finish(ConnectError.from(e, Code.InvalidArgument));
  }
}

/** One client's Session: the chat server's frames to the client while it reads them, then the end. */
class SessionStream {
  private upstream: RawCall | undefined;
  private started = false;
  private sent = false;
  private status: StatusObject | undefined;
  private readEnded = false;
  private wakeWriter: (() => void) | undefined;
  /** Ended (by us, the upstream or the client): nothing more is written or read. */
  over = false;
  /** The stream guard's place, released once when the stream is over. */
  release: () => void = noop;

  constructor(
    private readonly req: http2.Http2ServerRequest,
    private readonly res: http2.Http2ServerResponse,
    private readonly contentType: string,
    private readonly log: Logger,
  ) {}

  /** Starts relaying the upstream's frames; false (the call cancelled) when the stream is already over. */
  attach(upstream: RawCall): boolean {
    if (this.over) {
      upstream.call.cancel();
      upstream.done();
      return false;
    }
    this.upstream = upstream;
    const call = upstream.call;
    call.on("data", this.relay);
    // The end is read from 'status' (after every frame: 'end'); grpc-js also emits it as an error.
    call.on("error", noop);
    call.on("status", (s: StatusObject) => {
      this.status = s;
      this.endIfDone();
    });
    call.on("end", () => {
      this.readEnded = true;
      this.endIfDone();
    });
    call.on("drain", this.upstreamReady);
    this.res.on("drain", this.clientReady);
    return true;
  }

  /** Resolves when the upstream takes frames again, or the stream is over. */
  upstreamDrained(): Promise<void> {
    return new Promise((resolve) => (this.wakeWriter = resolve));
  }

  /** Ends the stream with `error` (undefined: OK) as gRPC trailers. */
  finish(error: ConnectError | undefined): void {
    if (this.over) return;
    this.stop();
    if (error?.code === Code.Internal) this.log.error({ err: error.cause ?? error }, "session ended with an internal error");
    if (this.res.writableEnded || this.res.destroyed) return;
    this.start();
    // The call is over for both sides: a client still sending is told to stop (RST_STREAM NO_ERROR
    // once the trailers are out, as gRPC over HTTP/2 has it), which also ends our read of its frames.
    const stream = this.res.stream;
    if (!this.req.complete) stream.once("wantTrailers", () => setImmediate(() => stream.close(http2.constants.NGHTTP2_NO_ERROR)));
    endCall(this.res, "grpc", error);
  }

  /** The client left (or the response finished). */
  readonly gone = (): void => {
    if (!this.over) this.stop();
  };

  private readonly relay = (message: Buffer): void => {
    if (this.over) return;
    this.start();
    this.sent = true;
    if (!this.res.write(encodeEnvelope(0, message))) this.upstream?.call.pause();
  };

  private readonly clientReady = (): void => {
    this.upstream?.call.resume();
  };

  private readonly upstreamReady = (): void => {
    const wake = this.wakeWriter;
    this.wakeWriter = undefined;
    wake?.();
  };

  private endIfDone(): void {
    const s = this.status;
    if (!s || !this.readEnded) return;
    // Only the door cancels a call it still serves from (and then it is over already): a CANCELLED
    // status is the chat server resetting it (a forced shutdown), so the client is told to reconnect.
    const error = s.code === Status.CANCELLED ? SERVER_RESET : fromStatus(s);
    this.finish(error === undefined ? undefined : ConnectError.from(edgeError(error, "chat", this.sent)));
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, { "content-type": this.contentType });
  }

  private stop(): void {
    this.over = true;
    const upstream = this.upstream;
    if (upstream) {
      if (!this.status) upstream.call.cancel();
      upstream.done();
      this.res.off("drain", this.clientReady);
    }
    this.release();
    this.upstreamReady();
  }
}

function noop(): void {}
