/**
 * One device's live stream: a bounded outbox between the delivery port (which must never wait)
 * and the transport (which writes only as fast as the client reads, thanks to HTTP/2 flow
 * control and grpc-js drain). When the outbox is full the reader has fallen too far behind;
 * thinning it silently would lie to the client (the Centrifugo `recovered` complaint), so the
 * stream ends as a slow consumer and the client recovers everything with Sync.
 */
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ChatEventSchema, KeepAliveSchema, type ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { DomainError } from "../../../platform/errors.js";
import type { LiveStream } from "../ports.js";

export interface DeviceStreamOptions {
  readonly userId: string;
  readonly deviceId: string;
  /** Events queued before the stream ends as a slow consumer. */
  readonly outboxEvents: number;
  /** A keep_alive event after this long without any event. */
  readonly keepAliveMs: number;
  /** Told once when the stream has ended, however it ended (e.g. to detach it from delivery). */
  readonly onEnd?: (stream: DeviceStream, error: DomainError | undefined) => void;
}

/** Most events in one live response (bounds one write's size; a burst still leaves in few). */
export const MAX_BATCH = 128;

/**
 * Most bytes of events in one live response, roughly: 128 messages of 100,000 characters would
 * be up to 50 MB, past what a mesh hop accepts (MESH_MAX_MESSAGE_BYTES); the rest go in the next.
 */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** An upper bound of an event's encoded size: a message's text is at most 3 UTF-8 bytes per UTF-16 unit. */
export function eventBytesAtMost(ev: ChatEvent): number {
  return ev.event.case === "message" ? 256 + ev.event.value.text.length * 3 : 256;
}

export const slowConsumer = (outboxEvents: number): DomainError =>
  new DomainError(
    "ResourceExhausted",
    `slow consumer: more than ${outboxEvents} events waited for this stream; call Sync from your last cursor and subscribe again`,
  );

export const replacedStream = (): DomainError =>
  new DomainError("Aborted", "replaced by a newer stream of the same device");

/** The keep_alive event: idle streams get one, and Subscribe opens with one (the stream is attached). */
export function keepAliveEvent(): ChatEvent {
  return create(ChatEventSchema, { time: timestampNow(), event: { case: "keepAlive", value: create(KeepAliveSchema) } });
}

export class DeviceStream implements LiveStream {
  readonly userId: string;
  readonly deviceId: string;
  private readonly outboxEvents: number;
  private readonly keepAliveMs: number;
  private readonly onEnd: DeviceStreamOptions["onEnd"];
  private queue: ChatEvent[] = [];
  private head = 0;
  private wake: (() => void) | undefined;
  /** A relay's notice that this stream has events or has ended (services/chat/live/relay.ts). */
  private listener: (() => void) | undefined;
  private endedWith: { error: DomainError | undefined } | undefined;
  private notified = false;

  constructor(opts: DeviceStreamOptions) {
    this.userId = opts.userId;
    this.deviceId = opts.deviceId;
    this.outboxEvents = opts.outboxEvents;
    this.keepAliveMs = opts.keepAliveMs;
    this.onEnd = opts.onEnd;
  }

  get ended(): boolean {
    return this.endedWith !== undefined;
  }

  /** Why the stream ended (undefined: still open, or ended without an error). */
  get endError(): DomainError | undefined {
    return this.endedWith?.error;
  }

  /**
   * For a relay that writes many streams on one call instead of reading batches(): `onReady` is
   * called (synchronously, so it must only take note) whenever an event is queued or the stream
   * ends; the relay then takes what is queued with takeUpTo. No keep-alive timer runs: the relay's
   * other end keeps idle streams alive.
   */
  listen(onReady: () => void): void {
    this.listener = onReady;
  }

  /** Events waiting to be written (metrics, tests). */
  get queued(): number {
    return this.queue.length - this.head;
  }

  push(event: ChatEvent): void {
    if (this.endedWith) return;
    if (this.queued >= this.outboxEvents) {
      this.end(slowConsumer(this.outboxEvents));
      return;
    }
    this.queue.push(event);
    this.signal();
  }

  /** Ends the stream now; queued events are dropped (the client recovers them with Sync). */
  end(error?: DomainError): void {
    if (this.endedWith) return;
    this.endedWith = { error };
    this.queue = [];
    this.head = 0;
    this.signal();
    this.notifyEnd();
  }

  /** Events one at a time (see batches). */
  async *events(signal: AbortSignal): AsyncGenerator<ChatEvent> {
    for await (const batch of this.batches(signal, 1)) yield* batch;
  }

  /**
   * Queued events in order, up to `maxBatch` per yield: everything that queued up while the
   * previous batch was being written goes out together, so a reader that fell behind catches
   * up in fewer, larger writes instead of paying every hop once per event. A keep_alive event
   * when idle keepAliveMs; stops when the signal aborts; throws the end error.
   */
  async *batches(signal: AbortSignal, maxBatch = MAX_BATCH): AsyncGenerator<ChatEvent[]> {
    const onAbort = () => this.end();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal.aborted) this.end();
      for (;;) {
        const batch = this.takeUpTo(maxBatch);
        if (batch.length > 0) {
          yield batch;
          continue;
        }
        if (this.endedWith) {
          if (this.endedWith.error) throw this.endedWith.error;
          return;
        }
        if (await this.waitOrKeepAlive()) continue;
        yield [keepAliveEvent()];
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      // The consumer stopped (client gone, write failed): nothing more may queue here.
      this.end();
    }
  }

  /**
   * Up to `max` queued events and about `maxBytes` (eventBytesAtMost; always at least one event),
   * oldest first; empty when none is queued.
   */
  takeUpTo(max: number, maxBytes = MAX_BATCH_BYTES): ChatEvent[] {
    const out: ChatEvent[] = [];
    let bytes = 0;
    while (out.length < max && this.head < this.queue.length) {
      bytes += eventBytesAtMost(this.queue[this.head]!);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(this.take()!);
    }
    return out;
  }

  private take(): ChatEvent | undefined {
    if (this.head >= this.queue.length) return undefined;
    const ev = this.queue[this.head]!;
    this.head += 1;
    // Compact now and then so a long-lived stream does not keep every event it ever sent.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return ev;
  }

  /** True when woken by an event or the end; false when the keep-alive interval passed idle. */
  private waitOrKeepAlive(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, this.keepAliveMs);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
    });
  }

  private signal(): void {
    this.wake?.();
    this.listener?.();
  }

  private notifyEnd(): void {
    if (this.notified) return;
    this.notified = true;
    this.onEnd?.(this, this.endedWith?.error);
  }
}
