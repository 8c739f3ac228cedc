/**
 * EventBus port: NATS-shaped messaging.
 *
 * Two kinds of delivery:
 *
 * 1. Fire-and-forget (`publish` / `subscribe`): at-most-once, no persistence, meant for cache
 *    invalidation and live fan-out. Subjects are dot-separated tokens; a subscription may use
 *    NATS wildcards: `*` matches exactly one token, `>` (last token only) matches one or more.
 *    A message published while the bus is disconnected is lost (publish may throw Unavailable
 *    or drop it; callers must not rely on it). A throwing handler is logged, never rethrown.
 *    Subscriptions made before the backend is reachable become active when it is.
 *
 * 2. Durable streams (`ensureStream` / `publishDurable` / `consume`): JetStream-shaped.
 *    - `ensureStream(name, subjects)` creates the stream or updates its subjects (idempotent).
 *    - `publishDurable(subject, data, msgId)` resolves once the stream has stored the message;
 *      a second publish with the same msgId within the dedupe window is acknowledged as
 *      `duplicate: true` and stored once. As on NATS, a durable publish is also an ordinary
 *      message on its subject: plain `subscribe`rs of that subject receive it (every publish,
 *      duplicates included), so live watchers need no second publish.
 *    - `consume(stream, durableName, handler)` attaches to a durable consumer (created on first
 *      use, starting at the beginning of the stream). Delivery is at-least-once with explicit
 *      ack: the handler must call `msg.ack()`. A message is redelivered when the handler calls
 *      `nak()`, throws, or neither acks nor naks within `ackWaitMs`. Consumers attached to the
 *      same durable name share the work. Progress survives `stop()` and process restarts.
 *    - `consumerInfo(stream, durableName)`: how far behind a durable is (JetStream consumer
 *      info: ack floor, num_pending, num_ack_pending, and the stored time of the oldest message
 *      not yet acked). Optional: a bus without durable streams' bookkeeping may omit it.
 *
 * Errors: backend unreachable -> DomainError "Unavailable" (publishDurable: outcome unknown,
 * retry with the same msgId); publishDurable to a subject no stream captures ->
 * "FailedPrecondition"; consume on an unknown stream, consumerInfo of an unknown stream or
 * durable -> "NotFound".
 */
import { invalidArgument } from "../errors.js";

export type Unsubscribe = () => void;

export interface BusMessage {
  readonly subject: string;
  readonly data: Uint8Array;
}

export interface StreamOptions {
  /** Messages older than this are dropped (default: kept until limits). */
  readonly maxAgeMs?: number;
  /** Window in which a repeated msgId is treated as a duplicate (default 2 minutes). */
  readonly duplicateWindowMs?: number;
}

export interface DurableMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Position in the stream (1-based). */
  readonly seq: number;
  /** 1 on first delivery, 2 on the first redelivery, ... */
  readonly deliveryCount: number;
  ack(): void;
  /** Ask for redelivery, optionally after a delay. */
  nak(delayMs?: number): void;
}

export interface ConsumeOptions {
  /** Redeliver when neither ack nor nak arrives within this time (default 30 s). */
  readonly ackWaitMs?: number;
  /** Give up on a message after this many deliveries (default unlimited). */
  readonly maxDeliver?: number;
  /** Only messages whose subject matches (wildcards allowed); default all of the stream. */
  readonly filterSubject?: string;
}

export interface Consumption {
  /** Stop receiving; unacked messages will be redelivered to this durable later. */
  stop(): Promise<void>;
}

/** A durable consumer's lag. */
export interface ConsumerLag {
  /** Every message with seq <= this has been acked (0 when none). */
  readonly ackFloorSeq: number;
  /** Messages not yet delivered to the durable (JetStream num_pending). */
  readonly pending: number;
  /** Messages delivered and not yet acked (JetStream num_ack_pending). */
  readonly ackPending: number;
  /** When the stream stored the oldest message not yet acked; undefined when all are acked. */
  readonly oldestUnacked: Date | undefined;
}

export interface PublishAck {
  readonly seq: number;
  readonly duplicate: boolean;
}

export interface EventBus {
  publish(subject: string, data: Uint8Array): void;
  subscribe(subject: string, handler: (msg: BusMessage) => void | Promise<void>): Unsubscribe;
  /**
   * Connection state of a bus that can lose its backend: the listener is called at once with
   * the current state, then on every change (false = fire-and-forget messages may be missed
   * from now on). Absent on a bus that is never disconnected (in-process).
   */
  onConnectionChange?(listener: (connected: boolean) => void): Unsubscribe;

  ensureStream(name: string, subjects: readonly string[], options?: StreamOptions): Promise<void>;
  publishDurable(subject: string, data: Uint8Array, msgId: string): Promise<PublishAck>;
  consume(
    stream: string,
    durableName: string,
    handler: (msg: DurableMessage) => void | Promise<void>,
    options?: ConsumeOptions,
  ): Promise<Consumption>;
  consumerInfo?(stream: string, durableName: string): Promise<ConsumerLag>;
}

/** NATS subject matching with `*` (one token) and `>` (the rest, at least one token). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    const tok = p[i];
    if (tok === ">") return i === p.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (tok !== "*" && tok !== s[i]) return false;
  }
  return p.length === s.length;
}

/** Throws InvalidArgument for a malformed subject; wildcards only where allowed (subscriptions, streams). */
export function checkSubject(subject: string, wildcards: boolean): void {
  const toks = subject.split(".");
  const bad =
    subject === "" ||
    toks.some((t) => t === "" || /\s/.test(t)) ||
    (!wildcards && toks.some((t) => t === "*" || t === ">")) ||
    toks.slice(0, -1).includes(">");
  if (bad) throw invalidArgument("subject", `invalid subject "${subject}"`);
}
