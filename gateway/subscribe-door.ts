/**
 * ChatService/Subscribe served without connect-node: gRPC (HTTP/2), gRPC-web and Connect
 * streaming (protobuf and JSON). An idle subscriber is the gateway's most numerous
 * resident (issue 12: <= 16 KB each): through connect-node one held a handler context, a chain of
 * async generators and promises, abort signals, header lists and a stream-guard generator, about
 * 50 KB with its HTTP/2 stream. Here it is the HTTP/2 stream (or HTTP/1.1 response), one small
 * object and the feed it pulls from (gateway/live-feed.ts; on a relay, the relayed stream's
 * outbox).
 *
 * The same order and answers as the Connect path (rpc-handler.ts): credentials from the headers
 * before a body byte is read (the admission), the body through the same guard (size limit,
 * malformed messages as InvalidArgument), the stream guard (per-identity cap, token expiry,
 * drain), then the placement. Responses are the chat server's messages in the protocol's 5-byte
 * envelope; the end is the protocol's own: gRPC trailers, the gRPC-web trailer frame, the
 * Connect EndStream message, each with the status, message, details and retry hints.
 *
 * Messages are (de)serialized by connect's own serializers (Connect JSON as connect-node reads and
 * writes it). Left to connect-node (the door does not claim them): gRPC-web text, compressed
 * requests, calls with a deadline header, gRPC over HTTP/1.1, any method but Subscribe.
 */
import type http from "node:http";
import { Code, ConnectError, createContextValues, type CallOptions } from "@connectrpc/connect";
import { createMethodSerializationLookup, encodeEnvelope } from "@connectrpc/connect/protocol";
import type { Logger } from "pino";
import { ChatService, SubscribeRequestSchema, type SubscribeRequest, type SubscribeResponse } from "../gen/switchboard/chat/v1/chat_pb.js";
import { SUBSCRIBE_PATH } from "../services/chat/live/relay.js";
import { closeIfUnread, endCall, readOneMessage, runClaimed, streamCaller, upstreamHeaders, wireOf, type Req, type Res, type StreamDoorOptions, type Wire } from "./door-wire.js";
import { edgeError } from "./forward.js";
import type { HttpDoor } from "./gateway.js";
import type { LiveFeed } from "./live-feed.js";
import { decodedResponse, isEncoded, type RelayedResponse } from "./relayed-response.js";

export { SUBSCRIBE_PATH };

const SUBSCRIBE = ChatService.method.subscribe;

/** Connect's own (de)serializers, JSON with its options (unknown fields ignored), binary. */
const serializers = (readMaxBytes: number) => createMethodSerializationLookup(SUBSCRIBE, undefined, undefined, { readMaxBytes, writeMaxBytes: 0xffffffff });
type Serializers = ReturnType<typeof serializers>;

export interface SubscribeDoorOptions extends StreamDoorOptions {
  readonly open: (input: SubscribeRequest, options: CallOptions) => Promise<LiveFeed<RelayedResponse>>;
}

export function subscribeDoor(opts: SubscribeDoorOptions): HttpDoor {
  const lookup = serializers(opts.readMaxBytes);
  return (req, res, log) => {
    if (req.method !== "POST") return false;
    const url = req.url ?? "";
    if (url !== SUBSCRIBE_PATH && !url.startsWith(`${SUBSCRIBE_PATH}?`)) return false;
    const how = wireOf(req);
    if (!how) return false;
    runClaimed("subscribe", res, log, serve(opts, lookup, req, res, how.wire, how.contentType, log));
    return true;
  };
}

async function serve(opts: SubscribeDoorOptions, lookup: Serializers, req: Req, res: Res, wire: Wire, contentType: string, log: Logger): Promise<void> {
  const binary = !contentType.endsWith("+json");
  const stream = new SubscribeStream(res, wire, contentType, binary, lookup.getO(binary), log);
  res.once("close", stream.gone);
  const caller = await streamCaller(opts.admission, opts.contextValues?.(req) ?? createContextValues(), req, ChatService.typeName, "Subscribe", log);
  if (caller instanceof ConnectError) {
    closeIfUnread(req, res);
    return stream.finish(caller);
  }
  let input: SubscribeRequest;
  try {
    input = await readOneMessage(req, contentType, SubscribeRequestSchema, opts.readMaxBytes, lookup.getI(binary), "server-streaming");
  } catch (e) {
    closeIfUnread(req, res);
    return stream.finish(ConnectError.from(e, Code.InvalidArgument));
  }
  if (stream.over) return;
  try {
    stream.release = opts.streams.admit(caller, (reason) => stream.finish(reason));
  } catch (e) {
    return stream.finish(ConnectError.from(e));
  }
  const headers = upstreamHeaders(req, opts.assertionFor(caller));
  let feed: LiveFeed<RelayedResponse>;
  try {
    feed = await opts.open(input, { headers });
  } catch (e) {
    return stream.finish(ConnectError.from(edgeError(e, "chat")));
  }
  stream.attach(feed);
}

/** One client's stream: writes what the feed has while the connection takes it, then the end. */
class SubscribeStream {
  private feed: LiveFeed<RelayedResponse> | undefined;
  private started = false;
  private blocked = false;
  private sent = false;
  /** Ended (by us, the feed or the client): nothing more is written or pulled. */
  over = false;
  /** The stream guard's place, released once when the stream is over. */
  release: () => void = noop;

  constructor(
    private readonly res: Res,
    private readonly wire: Wire,
    private readonly contentType: string,
    private readonly binary: boolean,
    private readonly output: { serialize(m: SubscribeResponse): Uint8Array },
    private readonly log: Logger,
  ) {}

  attach(feed: LiveFeed<RelayedResponse>): void {
    if (this.over) return feed.close();
    this.feed = feed;
    this.start();
    feed.onReady(this.pump);
    this.res.on("drain", this.drained);
    this.pump();
  }

  /** Ends the stream with `error` (undefined: OK) in the protocol's own way. */
  finish(error: ConnectError | undefined): void {
    if (this.over) return;
    this.stop();
    if (error?.code === Code.Internal) this.log.error({ err: error.cause ?? error }, "subscribe ended with an internal error");
    this.start();
    endCall(this.res, this.wire, error);
  }

  /** The client left (or the response finished). */
  readonly gone = (): void => {
    if (!this.over) this.stop();
  };

  private readonly drained = (): void => {
    this.blocked = false;
    this.pump();
  };

  private readonly pump = (): void => {
    const feed = this.feed;
    if (this.over || this.blocked || !feed) return;
    for (let res = feed.take(); res !== undefined; res = feed.take()) {
      this.sent = true;
      if (!(this.res as http.ServerResponse).write(encodeEnvelope(0, this.serialized(res)))) {
        this.blocked = true;
        return;
      }
    }
    const ended = feed.ended;
    if (ended) this.finish(ended.error === undefined ? undefined : ConnectError.from(edgeError(ended.error, "chat", this.sent)));
  };

  /** Binary clients get a relayed response's bytes as the chat server wrote them. */
  private serialized(res: RelayedResponse): Uint8Array {
    return this.binary && isEncoded(res) ? res.encoded : this.output.serialize(decodedResponse(res));
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, { "content-type": this.contentType });
  }

  private stop(): void {
    this.over = true;
    this.feed?.close();
    this.release();
    this.res.off("drain", this.drained);
  }
}

function noop(): void {}
