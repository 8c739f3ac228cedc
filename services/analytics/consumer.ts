/**
 * The analytics consumer: drains the CLICKS JetStream stream (durable "analytics") into the
 * ClickStatsStore. At-least-once delivery from JetStream + per-event-id dedupe in the store =
 * each click counted once. Messages are processed concurrently (bounded); a message is acked
 * only after its counters are written, and nak'ed (redelivered) when the store fails.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { ClickEventSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import type { EventBus, Consumption } from "../../platform/ports/event-bus.js";
import { CLICKS_ALL, CLICKS_DURABLE, CLICKS_STREAM } from "../redirect/subjects.js";
import { isHumanClick } from "./classify.js";
import type { ClickStatsStore } from "./ports.js";

export interface ClickConsumerOptions {
  readonly bus: EventBus;
  readonly store: ClickStatsStore;
  readonly log: Logger;
  /** Records in flight. Default 32. */
  readonly concurrency?: number;
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

  const release = (): void => {
    inflight--;
    const w = waiters.shift();
    if (w) w();
  };

  const handleClick = async (data: Uint8Array, ack: () => void, nak: (ms?: number) => void): Promise<void> => {
    let ev;
    try {
      ev = fromBinary(ClickEventSchema, data);
    } catch (err) {
      stats.malformed++;
      opts.log.warn({ err }, "dropping malformed ClickEvent");
      ack();
      return;
    }
    if (!ev.eventId || !ev.code) {
      stats.malformed++;
      ack();
      return;
    }
    try {
      const counted = await opts.store.record({
        eventId: ev.eventId,
        code: ev.code,
        time: ev.time ? timestampDate(ev.time) : new Date(),
        referrer: ev.referrer,
        human: isHumanClick(ev.userAgentClass, ev.isHead),
      });
      if (counted) stats.counted++;
      else stats.duplicates++;
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
      await opts.bus.ensureStream(CLICKS_STREAM, [CLICKS_ALL], { maxAgeMs: 7 * 86_400_000 });
      const c = await opts.bus.consume(
        CLICKS_STREAM,
        opts.durableName ?? CLICKS_DURABLE,
        async (msg) => {
          if (inflight >= limit) await new Promise<void>((r) => waiters.push(r));
          inflight++;
          void handleClick(msg.data, () => msg.ack(), (ms) => msg.nak(ms)).finally(release);
        },
        { ackWaitMs: 30_000 },
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
