/**
 * The gateway's end of ChatService.Relay (services/chat/live/relay.ts): every Subscribe stream
 * this gateway places on one chat server rides on one Relay call to it, instead of an RPC (a
 * grpc-js call stack and an HTTP/2 stream on each side) per subscriber.
 *
 * - Each relayed stream has an outbox here as on the chat server: a client that stops reading is
 *   ended as a slow consumer (RESOURCE_EXHAUSTED) once `outboxEvents` events wait for it, and the
 *   chat server is told to detach it. The call itself is always read, so one stuck client never
 *   holds back the others.
 * - Keep-alives of idle streams are made here (one timer per call, not one per stream): the
 *   chat server sends none on a relay. A stream idle for about `keepAliveMs` gets one.
 * - When the call ends (the chat server died, its connection dropped, the relay was closed),
 *   every stream on it ends with UNAVAILABLE and a retry hint: the clients reconnect and Sync.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  RelayRequestSchema,
  SubscribeResponseSchema,
  type RelayEnd,
  type RelayFrame,
  type RelayRequest,
  type RelayResponse,
  type SubscribeResponse,
} from "../gen/switchboard/chat/v1/chat_pb.js";
import { retryHints, toConnectError } from "../platform/grpc/status.js";
import { PushQueue } from "../platform/push-queue.js";
import { keepAliveEvent, slowConsumer } from "../services/chat/live/device-stream.js";
import { markAnswered } from "./forward.js";
import { iterateFeed, type LiveFeed } from "./live-feed.js";
import { decodedResponses, eventCountOf, type RelayedResponse } from "./relayed-response.js";

export type RelayCallFn = (requests: AsyncIterable<RelayRequest>, options: CallOptions) => AsyncIterable<RelayResponse>;

export interface ChatRelayOptions {
  /** Starts the Relay call on the chat server. */
  readonly call: RelayCallFn;
  /** A keep-alive for a stream idle about this long (never later). */
  readonly keepAliveMs: number;
  /** Events waiting for one client before its stream ends as a slow consumer. */
  readonly outboxEvents: number;
  readonly log?: Logger;
  /** Told once when the call has ended. */
  readonly onEnd?: () => void;
  /** Opens and closes not yet taken by the call before it is given up (default 100,000). */
  readonly maxPendingRequests?: number;
}

const MAX_PENDING_REQUESTS = 100_000;

const relayLost = (): ConnectError =>
  new ConnectError("chat server connection lost: reconnect (with backoff) and Sync from your cursor", Code.Unavailable, retryHints(0));

const relayClosed = (): ConnectError =>
  markAnswered(new ConnectError("chat server connection closed: reconnect (with backoff) and Sync from your cursor", Code.Unavailable, retryHints(0)));

/** The chat server's end of a stream as the client gets it. */
function endError(end: RelayEnd): ConnectError | undefined {
  if (end.code === 0) return undefined;
  const retryAfterMs = end.retryAfterMs === undefined ? undefined : Number(end.retryAfterMs);
  return markAnswered(new ConnectError(end.message, end.code as Code, retryHints(retryAfterMs)));
}

/** One client's stream on the call: its outbox and how it ended, pulled as a LiveFeed. */
class RelayedStream implements LiveFeed<RelayedResponse> {
  private queue: (RelayedResponse | undefined)[] = [];
  private head = 0;
  private queuedEvents = 0;
  private wake: (() => void) | undefined;
  /** The reader took everything and waits for more (not held back by its client). */
  private hungry = false;
  private closed = false;
  private endedWith: { readonly error: ConnectError | undefined } | undefined;
  /** The chat server has sent the attached notice (its first frame). */
  attached = false;
  /** When the client was last handed a response (or the stream opened). */
  lastActivity = Date.now();

  constructor(
    readonly id: bigint,
    private readonly onClose: (s: RelayedStream) => void,
  ) {}

  /** The reader waits with nothing queued. */
  get idle(): boolean {
    return this.hungry;
  }

  get queued(): number {
    return this.queuedEvents;
  }

  get ended(): { readonly error: ConnectError | undefined } | undefined {
    return this.head < this.queue.length ? undefined : this.endedWith;
  }

  push(res: RelayedResponse): void {
    if (this.endedWith) return;
    this.queue.push(res);
    this.queuedEvents += eventCountOf(res);
    this.ready();
  }

  end(error?: ConnectError): void {
    if (this.endedWith) return;
    this.endedWith = { error };
    this.queue = [];
    this.head = 0;
    this.queuedEvents = 0;
    this.ready();
  }

  take(): RelayedResponse | undefined {
    if (this.head < this.queue.length) {
      const res = this.queue[this.head]!;
      this.queue[this.head++] = undefined;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      }
      this.queuedEvents -= eventCountOf(res);
      this.lastActivity = Date.now();
      return res;
    }
    if (!this.endedWith) this.hungry = true;
    return undefined;
  }

  onReady(wake: () => void): void {
    this.wake = wake;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.wake = undefined;
    this.end();
    this.onClose(this);
  }

  private ready(): void {
    if (!this.hungry) return;
    this.hungry = false;
    this.wake?.();
  }
}

/** One Relay call to one chat server and the streams on it. */
export class ChatRelay {
  private readonly streams = new Map<bigint, RelayedStream>();
  /** Never blocks its writer: each request is a few bytes, one per open or close. */
  private readonly requests = new PushQueue<RelayRequest>();
  private readonly abort = new AbortController();
  private readonly ticker: NodeJS.Timeout;
  private nextId = 1n;
  private over: ConnectError | undefined;

  constructor(private readonly opts: ChatRelayOptions) {
    void this.read(opts.call(this.requests, { signal: this.abort.signal }));
    // Ticks a fifth of the interval apart: a stream gets its keep-alive 80-100 % of the way in.
    const tick = Math.max(20, Math.floor(opts.keepAliveMs / 5));
    this.ticker = setInterval(() => this.keepAlives(opts.keepAliveMs - tick), tick);
    this.ticker.unref();
  }

  /** Streams open on the call now. */
  get size(): number {
    return this.streams.size;
  }

  /** The call has ended: no stream can open on it. */
  get ended(): boolean {
    return this.over !== undefined;
  }

  /**
   * One client's Subscribe as a feed: the chat server's responses for it, keep-alives when
   * idle. Ends when the chat server ends it (its status), the call ends (UNAVAILABLE) or the
   * client is too slow (RESOURCE_EXHAUSTED); close() when the client leaves (the chat server is
   * told). `onClosed` runs after close().
   */
  open(deviceId: string, identityAssertion: string, onClosed?: () => void): LiveFeed<RelayedResponse> {
    if (this.over) throw this.over;
    const s = new RelayedStream(this.nextId++, (closed) => {
      this.detach(closed);
      onClosed?.();
    });
    this.streams.set(s.id, s);
    this.request(create(RelayRequestSchema, { streamId: s.id, frame: { case: "open", value: { deviceId, identityAssertion, acceptEncoded: true } } }));
    return s;
  }

  /** open() as an async generator that stops (quietly) when `signal` aborts. */
  async *subscribe(deviceId: string, identityAssertion: string, signal?: AbortSignal): AsyncGenerator<SubscribeResponse> {
    yield* decodedResponses(iterateFeed(this.open(deviceId, identityAssertion), signal));
  }

  /** Ends the call and every stream on it (UNAVAILABLE: reconnect). */
  close(): void {
    this.fail(relayClosed());
  }

  private async read(responses: AsyncIterable<RelayResponse>): Promise<void> {
    try {
      for await (const res of responses) for (const frame of res.frames) this.take(frame);
      this.opts.log?.warn("the chat server ended the relay call");
    } catch (e) {
      if (!this.over) this.opts.log?.warn({ err: e instanceof Error ? e.message : String(e) }, "relay call to the chat server failed");
    }
    this.fail(relayLost());
  }

  private take(frame: RelayFrame): void {
    const s = this.streams.get(frame.streamId);
    // Frames of a stream its client already left are in flight until the close arrives.
    if (!s) return;
    switch (frame.frame.case) {
      case "response":
      case "encoded":
        s.attached = true;
        // A copy: the frame's bytes are a view of the whole RelayResponse, which a slow client's
        // outbox would otherwise keep alive.
        s.push(frame.frame.case === "response" ? frame.frame.value : { encoded: frame.frame.value.response.slice(), eventCount: frame.frame.value.events });
        if (s.queued > this.opts.outboxEvents) {
          s.end(markAnswered(toConnectError(slowConsumer(this.opts.outboxEvents))));
          this.detach(s);
        }
        break;
      case "end":
        this.streams.delete(s.id);
        s.end(endError(frame.frame.value));
        break;
      default:
        break;
    }
  }

  /** Forgets a stream that ended here; the chat server is told unless it ended the stream itself. */
  private detach(s: RelayedStream): void {
    if (this.streams.get(s.id) !== s) return;
    this.streams.delete(s.id);
    this.request(create(RelayRequestSchema, { streamId: s.id, frame: { case: "close", value: {} } }));
  }

  /**
   * A chat server that stops taking requests (stalled, its connection alive) must not make them
   * pile up here while clients come and go: past the bound the call is given up, and its streams
   * reconnect elsewhere.
   */
  private request(req: RelayRequest): void {
    this.requests.push(req);
    if (this.requests.pending > (this.opts.maxPendingRequests ?? MAX_PENDING_REQUESTS)) {
      this.opts.log?.warn({ pending: this.requests.pending }, "the chat server takes no relay requests; giving the call up");
      this.fail(relayLost());
    }
  }

  private keepAlives(idleMs: number): void {
    const due = Date.now() - idleMs;
    for (const s of this.streams.values()) {
      if (s.attached && s.idle && s.lastActivity <= due) s.push(create(SubscribeResponseSchema, { events: [keepAliveEvent()] }));
    }
  }

  private fail(error: ConnectError): void {
    if (this.over) return;
    this.over = error;
    clearInterval(this.ticker);
    for (const s of this.streams.values()) s.end(error);
    this.streams.clear();
    this.requests.end();
    this.abort.abort();
    this.opts.onEnd?.();
  }
}
