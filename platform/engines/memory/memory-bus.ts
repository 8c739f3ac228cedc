import { DomainError, invalidArgument, notFound } from "../../errors.js";
import {
  checkSubject,
  subjectMatches,
  type BusMessage,
  type ConsumeOptions,
  type ConsumerLag,
  type Consumption,
  type DurableMessage,
  type EventBus,
  type PublishAck,
  type StreamOptions,
  type Unsubscribe,
} from "../../ports/event-bus.js";
import { silentLog, type EngineLog } from "../log.js";
import { systemClock, type Clock } from "./clock.js";

interface Sub {
  pattern: string;
  handler: (msg: BusMessage) => void | Promise<void>;
}

interface Stored {
  seq: number;
  subject: string;
  data: Uint8Array;
  at: number;
}

interface Stream {
  name: string;
  subjects: string[];
  maxAgeMs: number | undefined;
  duplicateWindowMs: number;
  messages: Stored[];
  /** Payload bytes held in `messages`. */
  bytes: number;
  lastSeq: number;
  msgIds: Map<string, { seq: number; at: number }>;
  consumers: Map<string, DurableState>;
}

interface Attached {
  handler: (msg: DurableMessage) => void | Promise<void>;
  options: ConsumeOptions;
}

/** Per durable consumer: what is delivered next and what awaits an ack. */
interface DurableState {
  nextSeq: number;
  /** seq -> delivery count, for messages delivered and not yet acked. */
  inflight: Map<number, { deliveries: number; timer: NodeJS.Timeout | undefined }>;
  /** Messages due for redelivery, in order. */
  redeliver: number[];
  attached: Attached[];
  rr: number;
  pumping: boolean;
}

const DEFAULT_ACK_WAIT_MS = 30_000;
/**
 * Payload bytes a stream keeps in memory before dropping its oldest messages (JetStream's
 * "limits" retention with DiscardOld): streams keep messages after they are acked, and the
 * embedded engine must not grow for as long as a stream's max age.
 */
export const DEFAULT_MAX_STREAM_BYTES = 64 * 1024 * 1024;
const DEFAULT_DUP_WINDOW_MS = 120_000;

/**
 * In-process EventBus with the same semantics as NATS + JetStream (see the port). Handlers run
 * asynchronously (never inside publish), so publishers are not slowed by subscribers.
 */
export class MemoryBus implements EventBus {
  private readonly subs = new Set<Sub>();
  private readonly streams = new Map<string, Stream>();
  private closed = false;

  constructor(
    private readonly log: EngineLog = silentLog,
    private readonly clock: Clock = systemClock,
    private readonly maxStreamBytes = DEFAULT_MAX_STREAM_BYTES,
  ) {}

  publish(subject: string, data: Uint8Array): void {
    checkSubject(subject, false);
    this.fanOut(subject, data);
  }

  /** Core delivery to plain subscribers; handlers run later, never inside the publisher's call. */
  private fanOut(subject: string, data: Uint8Array): void {
    for (const sub of this.subs) {
      if (!subjectMatches(sub.pattern, subject)) continue;
      queueMicrotask(() => {
        if (!this.subs.has(sub)) return;
        try {
          void Promise.resolve(sub.handler({ subject, data })).catch((err: unknown) =>
            this.log.warn({ err, subject }, "bus subscriber failed"),
          );
        } catch (err) {
          this.log.warn({ err, subject }, "bus subscriber failed");
        }
      });
    }
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void | Promise<void>): Unsubscribe {
    checkSubject(subject, true);
    const sub: Sub = { pattern: subject, handler };
    this.subs.add(sub);
    return () => {
      this.subs.delete(sub);
    };
  }

  async ensureStream(name: string, subjects: readonly string[], options: StreamOptions = {}): Promise<void> {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw invalidArgument("stream", `invalid name "${name}"`);
    if (subjects.length === 0) throw invalidArgument("subjects", "at least one subject");
    for (const s of subjects) checkSubject(s, true);
    for (const other of this.streams.values()) {
      if (other.name === name) continue;
      if (other.subjects.some((a) => subjects.some((b) => overlaps(a, b)))) {
        throw new DomainError("FailedPrecondition", `stream ${name} subjects overlap with stream ${other.name}`);
      }
    }
    const existing = this.streams.get(name);
    if (existing) {
      existing.subjects = [...subjects];
      if (options.maxAgeMs !== undefined) existing.maxAgeMs = options.maxAgeMs;
      if (options.duplicateWindowMs !== undefined) existing.duplicateWindowMs = options.duplicateWindowMs;
      return;
    }
    this.streams.set(name, {
      name,
      subjects: [...subjects],
      maxAgeMs: options.maxAgeMs,
      duplicateWindowMs: options.duplicateWindowMs ?? DEFAULT_DUP_WINDOW_MS,
      messages: [],
      bytes: 0,
      lastSeq: 0,
      msgIds: new Map(),
      consumers: new Map(),
    });
  }

  async publishDurable(subject: string, data: Uint8Array, msgId: string): Promise<PublishAck> {
    checkSubject(subject, false);
    if (this.closed) throw new DomainError("Unavailable", "event bus is closed");
    const stream = [...this.streams.values()].find((s) => s.subjects.some((p) => subjectMatches(p, subject)));
    if (!stream) throw new DomainError("FailedPrecondition", `no stream captures subject ${subject}`);
    const now = this.clock.now();
    // msgIds is in insertion (= time) order: prune from the front, stop at the first live one.
    for (const [id, v] of stream.msgIds) {
      if (now - v.at <= stream.duplicateWindowMs) break;
      stream.msgIds.delete(id);
    }
    // A JetStream publish is a NATS message first: plain subscribers of the subject get every
    // publish, the repeated ones too (the dedupe is the stream's, not the subject's).
    this.fanOut(subject, data.slice());
    const dup = stream.msgIds.get(msgId);
    if (dup) return { seq: dup.seq, duplicate: true };
    const seq = ++stream.lastSeq;
    stream.messages.push({ seq, subject, data: data.slice(), at: now });
    stream.bytes += data.length;
    stream.msgIds.set(msgId, { seq, at: now });
    if (stream.maxAgeMs !== undefined) {
      const cutoff = now - stream.maxAgeMs;
      while (stream.messages.length > 0 && stream.messages[0]!.at < cutoff) this.dropOldest(stream);
    }
    while (stream.bytes > this.maxStreamBytes && stream.messages.length > 1) this.dropOldest(stream);
    for (const c of stream.consumers.values()) this.pump(stream, c);
    return { seq, duplicate: false };
  }

  async consume(
    streamName: string,
    durableName: string,
    handler: (msg: DurableMessage) => void | Promise<void>,
    options: ConsumeOptions = {},
  ): Promise<Consumption> {
    const stream = this.streams.get(streamName);
    if (!stream) throw notFound(`stream ${streamName}`);
    let c = stream.consumers.get(durableName);
    if (!c) {
      c = { nextSeq: 1, inflight: new Map(), redeliver: [], attached: [], rr: 0, pumping: false };
      stream.consumers.set(durableName, c);
    }
    const state = c;
    const a: Attached = { handler, options };
    state.attached.push(a);
    this.pump(stream, state);
    return {
      stop: async () => {
        const i = state.attached.indexOf(a);
        if (i >= 0) state.attached.splice(i, 1);
      },
    };
  }

  async consumerInfo(streamName: string, durableName: string): Promise<ConsumerLag> {
    const stream = this.streams.get(streamName);
    if (!stream) throw notFound(`stream ${streamName}`);
    const c = stream.consumers.get(durableName);
    if (!c) throw notFound(`consumer ${streamName}/${durableName}`);
    let firstUnacked = c.nextSeq;
    for (const seq of c.inflight.keys()) if (seq < firstUnacked) firstUnacked = seq;
    // Messages dropped by the stream's limits are gone, not pending.
    const i = firstAtOrAfter(stream.messages, c.nextSeq);
    const pending = stream.messages.length - i;
    const oldest = stream.messages[firstAtOrAfter(stream.messages, firstUnacked)];
    return {
      ackFloorSeq: firstUnacked - 1,
      pending,
      ackPending: c.inflight.size,
      oldestUnacked: pending + c.inflight.size > 0 && oldest ? new Date(oldest.at) : undefined,
    };
  }

  /** Stops timers; pending redeliveries are dropped. */
  close(): void {
    this.closed = true;
    this.subs.clear();
    for (const s of this.streams.values()) {
      for (const c of s.consumers.values()) {
        for (const f of c.inflight.values()) if (f.timer) clearTimeout(f.timer);
        c.attached.length = 0;
      }
    }
  }

  private pump(stream: Stream, c: DurableState): void {
    if (c.pumping || this.closed) return;
    c.pumping = true;
    void (async () => {
      try {
        for (;;) {
          if (c.attached.length === 0 || this.closed) return;
          const a = c.attached[c.rr++ % c.attached.length]!;
          const msg = this.nextFor(stream, c, a.options);
          if (!msg) return;
          await this.deliver(stream, c, a, msg);
        }
      } finally {
        c.pumping = false;
      }
    })();
  }

  /** Drops the stream's oldest message, warning when a durable consumer had not acked it yet. */
  private dropOldest(stream: Stream): void {
    const m = stream.messages.shift()!;
    stream.bytes -= m.data.length;
    for (const [durable, c] of stream.consumers) {
      if (m.seq >= c.nextSeq || c.inflight.has(m.seq)) {
        this.log.warn({ stream: stream.name, durable, seq: m.seq }, "stream limit reached: dropped a message its consumer had not acked");
      }
    }
  }

  private nextFor(stream: Stream, c: DurableState, options: ConsumeOptions): Stored | undefined {
    while (c.redeliver.length > 0) {
      const seq = c.redeliver.shift()!;
      const m = stream.messages[firstAtOrAfter(stream.messages, seq)];
      if (m && m.seq === seq) return m;
      c.inflight.delete(seq);
    }
    for (;;) {
      const m = stream.messages[firstAtOrAfter(stream.messages, c.nextSeq)];
      if (!m) return undefined;
      c.nextSeq = m.seq + 1;
      if (options.filterSubject === undefined || subjectMatches(options.filterSubject, m.subject)) return m;
    }
  }

  private async deliver(stream: Stream, c: DurableState, a: Attached, m: Stored): Promise<void> {
    const prev = c.inflight.get(m.seq);
    if (prev?.timer) clearTimeout(prev.timer);
    const deliveries = (prev?.deliveries ?? 0) + 1;
    const entry: { deliveries: number; timer: NodeJS.Timeout | undefined } = { deliveries, timer: undefined };
    c.inflight.set(m.seq, entry);
    let settled = false;
    const maxDeliver = a.options.maxDeliver;
    const redeliverLater = (delayMs: number) => {
      if (entry.timer) clearTimeout(entry.timer);
      if (maxDeliver !== undefined && deliveries >= maxDeliver) {
        c.inflight.delete(m.seq);
        this.log.warn({ stream: stream.name, seq: m.seq, deliveries }, "message dropped after maxDeliver");
        return;
      }
      entry.timer = setTimeout(() => {
        entry.timer = undefined;
        if (c.inflight.get(m.seq) !== entry) return;
        c.redeliver.push(m.seq);
        this.pump(stream, c);
      }, delayMs);
      entry.timer.unref?.();
    };
    const settle = (ok: boolean, delayMs = 0) => {
      if (settled) return;
      settled = true;
      if (ok) {
        if (entry.timer) clearTimeout(entry.timer);
        if (c.inflight.get(m.seq) === entry) c.inflight.delete(m.seq);
      } else {
        redeliverLater(delayMs);
      }
    };
    redeliverLater(a.options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS);
    const msg: DurableMessage = {
      subject: m.subject,
      data: m.data,
      seq: m.seq,
      deliveryCount: deliveries,
      ack: () => settle(true),
      nak: (delayMs?: number) => settle(false, delayMs ?? 0),
    };
    try {
      await a.handler(msg);
    } catch (err) {
      this.log.warn({ err, stream: stream.name, seq: m.seq }, "durable handler failed; redelivering");
      settle(false);
    }
  }
}

/** Index of the first message with seq >= `seq` (messages are sorted by seq); length when none. */
function firstAtOrAfter(messages: readonly { readonly seq: number }[], seq: number): number {
  let lo = 0;
  let hi = messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (messages[mid]!.seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether two subject patterns can match a common subject. */
function overlaps(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const p = x[i];
    const q = y[i];
    if (p === ">" || q === ">") return p !== undefined && q !== undefined;
    if (p === undefined || q === undefined) return false;
    if (p !== "*" && q !== "*" && p !== q) return false;
  }
  return true;
}
