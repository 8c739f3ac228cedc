/**
 * The analytics consumer: drains the CLICKS JetStream stream (durable "analytics") into the
 * ClickStatsStore, one message (a ClickBatch of up to 500 clicks, or one ClickEvent) at a time
 * per store call. At-least-once delivery from JetStream + the store's per-batch exactly-once
 * (`recordBatch`, keyed by a hash of the clicks' event ids and the stream seq) = each click
 * counted once, also when a write timed out after it had applied (the batch is simply recorded
 * again: every write of the store is idempotent).
 *
 * - A message on `switchboard.clicks.batch.<gateway>` is a ClickBatch (what gateways publish);
 *   any other subject of the stream carries one ClickEvent (older gateways, tests).
 * - Messages are processed concurrently (bounded by messages and by clicks in flight); a
 *   message is acked only after its batch is recorded and nak'ed (redelivered) when that fails.
 *   Several processes attached to the same durable share the stream (JetStream pull consumer).
 * - Every `progressMs` the durable's lag (JetStream consumer info) is exported as gauges and
 *   reported to the store: its ack floor lets the store fold recorded batches into totals, and
 *   the lag is what GetLinkStats shows as the numbers' freshness.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { perRegistry } from "../../platform/metrics.js";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { ClickEventSchema, type UserAgentClass } from "../../gen/switchboard/events/v1/events_pb.js";
import type { EventBus, Consumption } from "../../platform/ports/event-bus.js";
import { CLICKS_ALL, CLICKS_DURABLE, CLICKS_STREAM, CLICKS_STREAM_OPTIONS, isClickBatchSubject } from "../redirect/subjects.js";
import { clickBatchId } from "./batch.js";
import { countryCode, isHumanClick } from "./classify.js";
import type { ClickRecord, ClickStatsStore, ConsumerProgress } from "./ports.js";

/** After a folding report that took D, the next one waits this many times D (see reportToStore). */
export const FOLD_PACE = 3;
/** While the consumer is behind, folds wait at most this long after the last one. */
export const MAX_FOLD_DEFER_MS = 30_000;

export interface ClickConsumerOptions {
  readonly bus: EventBus;
  readonly store: ClickStatsStore;
  readonly log: Logger;
  /** Where the lag gauges and click counters are registered (absent: none). */
  readonly registry?: Registry;
  /** Messages in flight. Default 32. */
  readonly concurrency?: number;
  /**
   * Clicks in flight (over all messages): a message waits while this many clicks are being
   * recorded, so received-but-unacked batches stay well within the ack wait. Default 16,000
   * (32 full batches).
   */
  readonly maxInflightClicks?: number;
  /**
   * Ack wait of the durable. Default 120 s: a batch, plus the batches the client buffers ahead,
   * must be recorded within it or JetStream redelivers them (harmless for the counts, but it
   * repeats the work while the store is slow).
   */
  readonly ackWaitMs?: number;
  readonly durableName?: string;
  /** Retry interval while NATS is unreachable at start. Default 1 s. */
  readonly retryMs?: number;
  /** How often the lag is measured, exported and reported to the store. Default 1 s. */
  readonly progressMs?: number;
}

export interface ClickConsumerStats {
  /** Clicks recorded (a redelivered batch counts again here, not in the store). */
  counted: number;
  /** Clicks in batches skipped as republished duplicates. */
  duplicates: number;
  malformed: number;
  failures: number;
  /** Messages whose batch was recorded (or skipped as a duplicate) and acked. */
  batches: number;
}

export interface ClickConsumer {
  readonly stats: ClickConsumerStats;
  /** Messages received but not yet acked. */
  readonly inflight: number;
  /** The last lag measured (undefined before the first or when the bus cannot tell). */
  readonly lag: ConsumerProgress | undefined;
  close(): Promise<void>;
}

/** Starts consuming in the background (retries until the bus is reachable); never throws. */
export function startClickConsumer(opts: ClickConsumerOptions): ClickConsumer {
  const stats: ClickConsumerStats = { counted: 0, duplicates: 0, malformed: 0, failures: 0, batches: 0 };
  const limit = opts.concurrency ?? 32;
  const durable = opts.durableName ?? CLICKS_DURABLE;
  let inflight = 0;
  let waiters: (() => void)[] = [];
  let consumption: Consumption | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let progressTimer: NodeJS.Timeout | undefined;
  let attempts = 0;
  let lag: ConsumerProgress | undefined;
  // Clicks per message lately (for the pending-clicks estimate: JetStream counts messages).
  let clicksPerMessage = 0;

  const metrics = opts.registry ? consumerMetrics(opts.registry) : undefined;

  const maxClicks = Math.max(1, opts.maxInflightClicks ?? 16_000);
  let inflightClicks = 0;
  const release = (n: number): void => {
    inflight--;
    inflightClicks -= n;
    const w = waiters;
    waiters = [];
    for (const r of w) r();
  };

  /** Decodes a ClickBatch (batch subject) or a single ClickEvent; undefined when malformed. */
  const decode = (subject: string, data: Uint8Array): readonly WireClick[] | undefined => {
    try {
      return isClickBatchSubject(subject) ? decodeClickBatch(data) : [fromClickEvent(fromBinary(ClickEventSchema, data))];
    } catch (err) {
      stats.malformed++;
      metrics?.malformed.inc();
      opts.log.warn({ err, subject }, "dropping malformed click message");
      return undefined;
    }
  };

  const handleMessage = async (seq: number, clicks: readonly WireClick[], ack: () => void, nak: (ms?: number) => void): Promise<void> => {
    try {
      const records: ClickRecord[] = [];
      for (const c of clicks) {
        // A click without id or code cannot be attributed: skipped (the rest of the batch counts).
        if (!c.eventId || !c.code) {
          stats.malformed++;
          metrics?.malformed.inc();
          continue;
        }
        records.push({
          eventId: c.eventId,
          code: c.code,
          time: c.ms === undefined ? new Date() : new Date(c.ms),
          referrer: c.referrer,
          human: isHumanClick(c.cls, c.isHead),
          // Checked again: the stream is internal, but counters keyed by it must stay ISO codes.
          country: countryCode(c.country),
        });
      }
      if (records.length > 0) {
        const r = await opts.store.recordBatch({ id: clickBatchId(records.map((x) => x.eventId)), seq }, records);
        if (r.duplicate) {
          stats.duplicates += records.length;
          metrics?.duplicates.inc(records.length);
        } else {
          stats.counted += r.counted;
          metrics?.recorded.inc(r.counted);
        }
      }
      clicksPerMessage = clicksPerMessage === 0 ? clicks.length : clicksPerMessage * 0.95 + clicks.length * 0.05;
      stats.batches++;
      ack();
    } catch (err) {
      stats.failures++;
      metrics?.failures.inc();
      if (stats.failures % 100 === 1) opts.log.warn({ err, seq }, "recording a click batch failed; redelivering");
      nak(500);
    }
  };

  /**
   * Folds paced by their cost. A folding report makes the store fold recorded batches into the
   * totals, and a fold costs about the rows the clicks touched since the last one, however many
   * clicks that was: with two gateways' backlog, folding every second took as much of the
   * database as recording (drain 58-66k clicks/s; 83k/s with folds held back). So:
   * - one folding report at a time, and after one that took D the next waits FOLD_PACE x D
   *   (a quiet consumer folds every progressMs, a busy one spends at most a quarter of its time
   *   folding);
   * - while behind (more messages waiting than being recorded) folds wait until the backlog is
   *   gone, at most MAX_FOLD_DEFER_MS after the last one (the totals lag; `asOf` says so).
   * The lag figures are reported every progressMs regardless (`fold: false`).
   */
  let folding: Promise<void> | undefined;
  let lagReport: Promise<void> | undefined;
  let nextFoldAt = 0;
  let lastFoldAt = Date.now();
  const report = (p: ConsumerProgress, fold: boolean): Promise<void> =>
    opts.store.reportProgress(p, { fold }).catch((err: unknown) => opts.log.debug({ err }, "reporting the analytics lag failed"));
  const reportToStore = (p: ConsumerProgress): void => {
    const now = Date.now();
    const behind = p.pendingMessages > limit;
    if (!folding && now >= nextFoldAt && (!behind || now - lastFoldAt >= MAX_FOLD_DEFER_MS)) {
      folding = report(p, true).finally(() => {
        const end = Date.now();
        nextFoldAt = end + FOLD_PACE * (end - now);
        lastFoldAt = end;
        folding = undefined;
      });
    } else if (!lagReport) {
      lagReport = report(p, false).finally(() => (lagReport = undefined));
    }
  };

  let reporting = false;
  const reportProgress = async (): Promise<void> => {
    if (reporting || closed || !opts.bus.consumerInfo) return;
    reporting = true;
    try {
      const info = await opts.bus.consumerInfo(CLICKS_STREAM, durable);
      const pendingMessages = info.pending + info.ackPending;
      const p: ConsumerProgress = {
        durable,
        ackFloorSeq: info.ackFloorSeq,
        pendingMessages,
        pendingClicks: Math.round(pendingMessages * clicksPerMessage),
        oldestPending: info.oldestUnacked,
        at: new Date(),
      };
      lag = p;
      if (metrics) {
        metrics.pendingMessages.set(info.pending);
        metrics.ackPendingMessages.set(info.ackPending);
        metrics.pendingClicks.set(p.pendingClicks);
        metrics.oldestAge.set(p.oldestPending ? Math.max(0, (p.at.getTime() - p.oldestPending.getTime()) / 1000) : 0);
      }
      reportToStore(p);
    } catch (err) {
      opts.log.debug({ err }, "measuring or reporting the analytics lag failed");
    } finally {
      reporting = false;
    }
  };

  const start = async (): Promise<void> => {
    if (closed) return;
    try {
      await opts.bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL], CLICKS_STREAM_OPTIONS);
      const c = await opts.bus.consume(
        CLICKS_STREAM,
        durable,
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
          void handleMessage(msg.seq, clicks, () => msg.ack(), (ms) => msg.nak(ms)).finally(() => release(n));
        },
        { ackWaitMs: opts.ackWaitMs ?? 120_000 },
      );
      if (closed) await c.stop();
      else {
        consumption = c;
        progressTimer = setInterval(() => void reportProgress(), opts.progressMs ?? 1_000);
        progressTimer.unref();
      }
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
    get lag() {
      return lag;
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (progressTimer) clearInterval(progressTimer);
      await consumption?.stop();
      await Promise.all([folding, lagReport]);
      const w = waiters;
      waiters = [];
      for (const r of w) r();
    },
  };
}

interface ConsumerMetrics {
  readonly recorded: Counter;
  readonly duplicates: Counter;
  readonly malformed: Counter;
  readonly failures: Counter;
  readonly pendingMessages: Gauge;
  readonly ackPendingMessages: Gauge;
  readonly pendingClicks: Gauge;
  readonly oldestAge: Gauge;
}

/** Registered once per registry (perRegistry). */
const consumerMetrics = perRegistry((registers): ConsumerMetrics => ({
  recorded: new Counter({ name: "analytics_clicks_recorded_total", help: "Clicks recorded by this analytics consumer (a redelivered batch again)", registers }),
  duplicates: new Counter({ name: "analytics_clicks_duplicate_total", help: "Clicks in republished batches skipped as already recorded", registers }),
  malformed: new Counter({ name: "analytics_clicks_malformed_total", help: "Click messages or clicks dropped as malformed", registers }),
  failures: new Counter({ name: "analytics_batch_failures_total", help: "Click batches whose recording failed (redelivered)", registers }),
  pendingMessages: new Gauge({ name: "analytics_consumer_pending_messages", help: "CLICKS messages not yet delivered to the analytics durable (JetStream num_pending)", registers }),
  ackPendingMessages: new Gauge({
    name: "analytics_consumer_ack_pending_messages",
    help: "CLICKS messages delivered to the analytics durable and not yet acked (JetStream num_ack_pending)",
    registers,
  }),
  pendingClicks: new Gauge({ name: "analytics_consumer_pending_clicks", help: "Clicks not yet recorded (estimate: pending messages x recent clicks per message)", registers }),
  oldestAge: new Gauge({ name: "analytics_consumer_oldest_pending_age_seconds", help: "Age of the oldest CLICKS message not yet recorded (0 when none)", registers }),
}));

/** The fields of a ClickEvent the consumer uses. */
interface WireClick {
  readonly eventId: string;
  readonly code: string;
  /** Epoch ms; undefined when the event has no time. */
  readonly ms: number | undefined;
  readonly referrer: string;
  readonly cls: UserAgentClass;
  readonly isHead: boolean;
  readonly country: string;
}

function fromClickEvent(ev: ReturnType<typeof fromBinary<typeof ClickEventSchema>>): WireClick {
  return {
    eventId: ev.eventId,
    code: ev.code,
    ms: ev.time ? timestampMs(ev.time) : undefined,
    referrer: ev.referrer,
    cls: ev.userAgentClass,
    isHead: ev.isHead,
    country: ev.country,
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
    const t = tagOf(r);
    const no = t >>> 3;
    const wt = t & 7;
    if (no === 1 && wt === WireType.LengthDelimited) {
      const end = r.uint32() + r.pos;
      out.push(readClickEvent(r, end));
    } else r.skip(wt, no);
  }
  return out;
}

/**
 * A field's tag as one number (field << 3 | wire type): BinaryReader.tag() returns a new array
 * for every field, eight or so per click. Refuses field 0 as tag() does; skip() refuses an
 * unknown wire type.
 */
function tagOf(r: BinaryReader): number {
  const t = r.uint32();
  if (t >>> 3 === 0) throw new Error(`illegal tag: field no 0 wire type ${t & 7}`);
  return t;
}

function readClickEvent(r: BinaryReader, end: number): WireClick {
  if (end > r.len) throw new Error("ClickEvent: premature end of data");
  let eventId = "";
  let code = "";
  let ms: number | undefined;
  let referrer = "";
  let cls = 0;
  let isHead = false;
  let country = "";
  while (r.pos < end) {
    const t = tagOf(r);
    const no = t >>> 3;
    const wt = t & 7;
    if (wt === WireType.LengthDelimited && no === 1) eventId = r.string();
    else if (wt === WireType.LengthDelimited && no === 2) code = r.string();
    else if (wt === WireType.LengthDelimited && no === 3) {
      const tEnd = r.uint32() + r.pos;
      let seconds = 0;
      let nanos = 0;
      while (r.pos < tEnd) {
        const ft = tagOf(r);
        const f = ft >>> 3;
        const w = ft & 7;
        if (f === 1 && w === WireType.Varint) seconds = Number(r.int64());
        else if (f === 2 && w === WireType.Varint) nanos = r.int32();
        else r.skip(w, f);
      }
      if (r.pos !== tEnd) throw new Error("Timestamp: bad length");
      ms = seconds * 1000 + Math.round(nanos / 1_000_000);
    } else if (wt === WireType.LengthDelimited && no === 4) referrer = r.string();
    else if (wt === WireType.Varint && no === 5) cls = r.int32();
    else if (wt === WireType.LengthDelimited && no === 6) country = r.string();
    else if (wt === WireType.Varint && no === 7) isHead = r.bool();
    else r.skip(wt, no);
  }
  if (r.pos !== end) throw new Error("ClickEvent: bad length");
  return { eventId, code, ms, referrer, cls: cls as UserAgentClass, isHead, country };
}
