/**
 * The analytics consumer: drains the CLICKS JetStream stream (durable "analytics") into the
 * ClickStatsStore. At-least-once delivery from JetStream + per-event-id dedupe in the store =
 * each click counted once.
 *
 * - A message on `switchboard.clicks.batch.<gateway>` is a ClickBatch (what gateways publish);
 *   any other subject of the stream carries one ClickEvent (older gateways, tests).
 * - Every click is recorded under its own event id, so a redelivered batch counts nothing twice
 *   (the clicks already recorded come back as duplicates).
 * - Messages are processed concurrently (bounded), and so are store writes (bounded, shared by
 *   all messages, so one batch of 500 does not serialize behind one write at a time); a message
 *   is acked only after all its clicks are recorded, and nak'ed (redelivered whole) when any
 *   write fails.
 * - Clicks in flight are bounded too (`maxInflightClicks`), and the durable's ack wait is 120 s,
 *   so batches received while the store is slow are not redelivered (and recorded twice over,
 *   as duplicates) before their turn.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { ClickEventSchema, type UserAgentClass } from "../../gen/switchboard/events/v1/events_pb.js";
import type { EventBus, Consumption } from "../../platform/ports/event-bus.js";
import { CLICKS_ALL, CLICKS_DURABLE, CLICKS_STREAM, CLICKS_STREAM_OPTIONS, isClickBatchSubject } from "../redirect/subjects.js";
import { isHumanClick } from "./classify.js";
import type { ClickStatsStore } from "./ports.js";

export interface ClickConsumerOptions {
  readonly bus: EventBus;
  readonly store: ClickStatsStore;
  readonly log: Logger;
  /** Messages in flight. Default 32. */
  readonly concurrency?: number;
  /** Store writes in flight (over all messages). Default 32. */
  readonly recordConcurrency?: number;
  /**
   * Clicks in flight (over all messages): a batch waits while this many clicks are being
   * recorded, so received-but-unacked batches stay well within the ack wait. Default 4,000.
   */
  readonly maxInflightClicks?: number;
  /**
   * Ack wait of the durable. Default 120 s: a batch of up to 500 clicks, plus the batches the
   * client buffers ahead, must be recorded within it or JetStream redelivers them (harmless for
   * the counts, which dedupe per event id, but it repeats the work while the store is slow).
   */
  readonly ackWaitMs?: number;
  readonly durableName?: string;
  /** Retry interval while NATS is unreachable at start. Default 1 s. */
  readonly retryMs?: number;
}

export interface ClickConsumerStats {
  counted: number;
  duplicates: number;
  malformed: number;
  failures: number;
}

export interface ClickConsumer {
  readonly stats: ClickConsumerStats;
  /** Messages received but not yet acked. */
  readonly inflight: number;
  close(): Promise<void>;
}

/** Starts consuming in the background (retries until the bus is reachable); never throws. */
export function startClickConsumer(opts: ClickConsumerOptions): ClickConsumer {
  const stats: ClickConsumerStats = { counted: 0, duplicates: 0, malformed: 0, failures: 0 };
  const limit = opts.concurrency ?? 32;
  let inflight = 0;
  let waiters: (() => void)[] = [];
  let consumption: Consumption | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let attempts = 0;

  const maxClicks = Math.max(1, opts.maxInflightClicks ?? 4_000);
  let inflightClicks = 0;
  const release = (n: number): void => {
    inflight--;
    inflightClicks -= n;
    const w = waiters;
    waiters = [];
    for (const r of w) r();
  };

  // Store writes in flight, shared by all messages: a message takes up to 16 "writer" slots
  // (while free) and each writer records the message's clicks one after another.
  const writeLimit = Math.max(1, opts.recordConcurrency ?? 32);
  let writers = 0;
  const writerWaiters: (() => void)[] = [];
  const acquireWriter = async (): Promise<void> => {
    while (writers >= writeLimit) await new Promise<void>((r) => writerWaiters.push(r));
    writers++;
  };
  const releaseWriter = (): void => {
    writers--;
    writerWaiters.shift()?.();
  };

  /** Records one click (dedupe by its own event id); a click without id or code is skipped. */
  const recordOne = (c: WireClick): Promise<boolean> | undefined => {
    if (!c.eventId || !c.code) {
      stats.malformed++;
      return undefined;
    }
    return opts.store.record({
      eventId: c.eventId,
      code: c.code,
      time: c.ms === undefined ? new Date() : new Date(c.ms),
      referrer: c.referrer,
      human: isHumanClick(c.cls, c.isHead),
    });
  };

  /** Decodes a ClickBatch (batch subject) or a single ClickEvent; undefined when malformed. */
  const decode = (subject: string, data: Uint8Array): readonly WireClick[] | undefined => {
    try {
      return isClickBatchSubject(subject) ? decodeClickBatch(data) : [fromClickEvent(fromBinary(ClickEventSchema, data))];
    } catch (err) {
      stats.malformed++;
      opts.log.warn({ err, subject }, "dropping malformed click message");
      return undefined;
    }
  };

  const handleMessage = async (clicks: readonly WireClick[], ack: () => void, nak: (ms?: number) => void): Promise<void> => {
    try {
      let next = 0;
      let failure: { err: unknown } | undefined;
      const writer = async (): Promise<void> => {
        await acquireWriter();
        try {
          // Keep going after a failure: every click gets its attempt before the nak.
          while (next < clicks.length) {
            const p = recordOne(clicks[next++]!);
            if (p === undefined) continue;
            try {
              if (await p) stats.counted++;
              else stats.duplicates++;
            } catch (err) {
              failure ??= { err };
            }
          }
        } finally {
          releaseWriter();
        }
      };
      const n = Math.min(clicks.length, 16);
      if (n === 1) await writer();
      else {
        const ws: Promise<void>[] = [];
        for (let i = 0; i < n; i++) ws.push(writer());
        await Promise.all(ws);
      }
      if (failure) throw failure.err;
      ack();
    } catch (err) {
      stats.failures++;
      if (stats.failures % 100 === 1) opts.log.warn({ err }, "recording a click failed; redelivering");
      nak(500);
    }
  };

  const start = async (): Promise<void> => {
    if (closed) return;
    try {
      await opts.bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL], CLICKS_STREAM_OPTIONS);
      const c = await opts.bus.consume(
        CLICKS_STREAM,
        opts.durableName ?? CLICKS_DURABLE,
        async (msg) => {
          const clicks = decode(msg.subject, msg.data);
          if (clicks === undefined) {
            msg.ack();
            return;
          }
          const n = clicks.length;
          while (!closed && (inflight >= limit || (inflightClicks > 0 && inflightClicks + n > maxClicks))) {
            await new Promise<void>((r) => waiters.push(r));
          }
          inflight++;
          inflightClicks += n;
          void handleMessage(clicks, () => msg.ack(), (ms) => msg.nak(ms)).finally(() => release(n));
        },
        { ackWaitMs: opts.ackWaitMs ?? 120_000 },
      );
      if (closed) await c.stop();
      else consumption = c;
    } catch (err) {
      attempts++;
      if (attempts % 10 === 0) opts.log.warn({ err, attempts }, "analytics consumer not started yet; retrying");
      else opts.log.debug({ err, attempts }, "analytics consumer not started yet; retrying");
      timer = setTimeout(() => void start(), opts.retryMs ?? 1_000);
      timer.unref();
    }
  };
  void start();

  return {
    stats,
    get inflight() {
      return inflight;
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await consumption?.stop();
      const w = waiters;
      waiters = [];
      for (const r of w) r();
    },
  };
}

/** The fields of a ClickEvent the consumer uses. */
interface WireClick {
  readonly eventId: string;
  readonly code: string;
  /** Epoch ms; undefined when the event has no time. */
  readonly ms: number | undefined;
  readonly referrer: string;
  readonly cls: UserAgentClass;
  readonly isHead: boolean;
}

function fromClickEvent(ev: ReturnType<typeof fromBinary<typeof ClickEventSchema>>): WireClick {
  return {
    eventId: ev.eventId,
    code: ev.code,
    ms: ev.time ? timestampMs(ev.time) : undefined,
    referrer: ev.referrer,
    cls: ev.userAgentClass,
    isHead: ev.isHead,
  };
}

/**
 * ClickBatch (events.proto) decoded straight from the wire into plain objects: the generic
 * reflection-based fromBinary costs several times more per click on this path. Unknown fields
 * are skipped; malformed input throws (the message is then dropped as malformed).
 */
export function decodeClickBatch(data: Uint8Array): WireClick[] {
  const r = new BinaryReader(data);
  const out: WireClick[] = [];
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) {
      const end = r.uint32() + r.pos;
      out.push(readClickEvent(r, end));
    } else r.skip(wt, no);
  }
  return out;
}

function readClickEvent(r: BinaryReader, end: number): WireClick {
  if (end > r.len) throw new Error("ClickEvent: premature end of data");
  let eventId = "";
  let code = "";
  let ms: number | undefined;
  let referrer = "";
  let cls = 0;
  let isHead = false;
  while (r.pos < end) {
    const [no, wt] = r.tag();
    if (wt === WireType.LengthDelimited && no === 1) eventId = r.string();
    else if (wt === WireType.LengthDelimited && no === 2) code = r.string();
    else if (wt === WireType.LengthDelimited && no === 3) {
      const tEnd = r.uint32() + r.pos;
      let seconds = 0;
      let nanos = 0;
      while (r.pos < tEnd) {
        const [f, w] = r.tag();
        if (f === 1 && w === WireType.Varint) seconds = Number(r.int64());
        else if (f === 2 && w === WireType.Varint) nanos = r.int32();
        else r.skip(w, f);
      }
      if (r.pos !== tEnd) throw new Error("Timestamp: bad length");
      ms = seconds * 1000 + Math.round(nanos / 1_000_000);
    } else if (wt === WireType.LengthDelimited && no === 4) referrer = r.string();
    else if (wt === WireType.Varint && no === 5) cls = r.int32();
    else if (wt === WireType.Varint && no === 7) isHead = r.bool();
    else r.skip(wt, no);
  }
  if (r.pos !== end) throw new Error("ClickEvent: bad length");
  return { eventId, code, ms, referrer, cls: cls as UserAgentClass, isHead };
}
