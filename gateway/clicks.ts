/**
 * Click events from the redirect door to NATS JetStream, never on the request path.
 *
 * `record()` only appends a few strings to a bounded in-memory queue (no protobuf, no I/O);
 * a background pump classifies, encodes and publishes each ClickEvent with
 * `publishDurable(switchboard.clicks.<code>, bytes, msgId = event_id)` (JetStream dedupes a retry
 * of the same event), with a bounded number in flight. A failed publish goes back to the front
 * of the queue and is retried with backoff (a NATS blip loses nothing); when the queue is full
 * the new click is dropped and counted in `redirect_clicks_dropped_total`.
 */
import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { ClickEventSchema } from "../gen/switchboard/events/v1/events_pb.js";
import { isDomainError } from "../platform/errors.js";
import type { EventBus } from "../platform/ports/event-bus.js";
import { classifyUserAgent, referrerHost } from "../services/analytics/classify.js";
import { CLICKS_ALL, CLICKS_STREAM, clickSubject } from "../services/redirect/subjects.js";

export interface ClickEmitterOptions {
  readonly bus: EventBus;
  readonly gatewayId: string;
  readonly log: Logger;
  readonly registry?: Registry;
  /** Queue bound (clicks waiting to be published). Default 100,000. */
  readonly maxQueue?: number;
  /** Publishes in flight. Default 128. */
  readonly concurrency?: number;
  /**
   * Also publish on core NATS for live watchers. Needed on the memory bus, whose durable publish
   * does not reach plain subscribers (NATS's does). Default false.
   */
  readonly livePublish?: boolean;
}

interface Pending {
  readonly id: string;
  readonly code: string;
  readonly ms: number;
  readonly referer: string | undefined;
  readonly ua: string | undefined;
  readonly head: boolean;
  bytes?: Uint8Array;
}

export interface ClickEmitterStats {
  emitted: number;
  published: number;
  dropped: number;
  retries: number;
}

export class ClickEmitter {
  readonly stats: ClickEmitterStats = { emitted: 0, published: 0, dropped: 0, retries: 0 };
  private queue: Pending[] = [];
  private head = 0;
  private inflight = 0;
  private scheduled = false;
  private backoffMs = 0;
  private backoffTimer: NodeJS.Timeout | undefined;
  private streamReady: Promise<void> | undefined;
  private streamOk = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private readonly max: number;
  private readonly concurrency: number;
  private readonly dropped: Counter | undefined;

  constructor(private readonly opts: ClickEmitterOptions) {
    this.max = opts.maxQueue ?? 100_000;
    this.concurrency = opts.concurrency ?? 128;
    this.dropped = opts.registry
      ? new Counter({
          name: "redirect_clicks_dropped_total",
          help: "Click events dropped because the in-memory publish queue was full",
          registers: [opts.registry],
        })
      : undefined;
  }

  /** Hot path: O(1), no I/O. */
  record(code: string, referer: string | undefined, ua: string | undefined, head: boolean): void {
    if (this.pending >= this.max || this.closed) {
      this.stats.dropped++;
      this.dropped?.inc();
      return;
    }
    this.stats.emitted++;
    this.queue.push({ id: randomUUID(), code, ms: Date.now(), referer, ua, head });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.pump);
    }
  }

  /** Clicks not yet acknowledged by the stream. */
  get pending(): number {
    return this.queue.length - this.head + this.inflight;
  }

  /** Resolves when everything queued has been published (or after timeoutMs). */
  drain(timeoutMs = 10_000): Promise<boolean> {
    if (this.pending === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** Tries to publish what is queued for up to graceMs, then stops. */
  async close(graceMs = 2_000): Promise<void> {
    await this.drain(graceMs);
    this.closed = true;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
  }

  private ensureStream(): Promise<void> {
    this.streamReady ??= this.opts.bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL], { maxAgeMs: 7 * 86_400_000 }).catch((e: unknown) => {
      this.streamReady = undefined;
      throw e;
    });
    return this.streamReady;
  }

  private readonly pump = (): void => {
    this.scheduled = false;
    if (this.closed || this.backoffTimer) return;
    while (this.inflight < this.concurrency && this.head < this.queue.length) {
      const p = this.queue[this.head]!;
      this.queue[this.head++] = undefined as unknown as Pending;
      this.inflight++;
      this.publish(p);
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  };

  private publish(p: Pending): void {
    p.bytes ??= toBinary(
      ClickEventSchema,
      create(ClickEventSchema, {
        eventId: p.id,
        code: p.code,
        time: timestampFromMs(p.ms),
        referrer: referrerHost(p.referer),
        userAgentClass: classifyUserAgent(p.ua),
        isHead: p.head,
        gatewayId: this.opts.gatewayId,
      }),
    );
    const bytes = p.bytes;
    const subject = clickSubject(p.code);
    // Once the stream is known to exist, publish directly (one promise per click, not three).
    const sent = this.streamOk
      ? this.opts.bus.publishDurable(subject, bytes, p.id)
      : this.ensureStream().then(() => {
          this.streamOk = true;
          return this.opts.bus.publishDurable(subject, bytes, p.id);
        });
    sent.then(
        () => {
          this.inflight--;
          this.stats.published++;
          this.backoffMs = 0;
          if (this.opts.livePublish) {
            try {
              this.opts.bus.publish(subject, bytes);
            } catch {
              // live fan-out is best effort
            }
          }
          this.next();
        },
        (err: unknown) => {
          this.inflight--;
          this.stats.retries++;
          if (isDomainError(err) && err.kind === "FailedPrecondition") {
            this.streamReady = undefined;
            this.streamOk = false;
          }
          // Back to the front: order is not guaranteed anyway, loss is what matters.
          this.queue.splice(this.head, 0, p);
          this.backoffMs = Math.min(2_000, Math.max(50, this.backoffMs * 2));
          if (this.stats.retries % 100 === 1) this.opts.log.warn({ err, pending: this.pending }, "click publish failed; retrying");
          if (!this.backoffTimer && !this.closed) {
            this.backoffTimer = setTimeout(() => {
              this.backoffTimer = undefined;
              this.pump();
            }, this.backoffMs);
            this.backoffTimer.unref();
          }
        },
      );
  }

  private next(): void {
    if (this.pending === 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
      return;
    }
    if (!this.scheduled && !this.backoffTimer) {
      this.scheduled = true;
      setImmediate(this.pump);
    }
  }
}
