/**
 * The push worker: drains the mesh's PUSH stream (services/push/queue.ts) through the providers.
 * Any number of workers share one durable, so each request is handled by one of them at a time
 * and redelivered (to any) until acked: a worker killed mid-drain loses nothing.
 *
 * Per request: past its expiry -> dropped (counted); otherwise every registered device of the
 * recipient that has not had it yet is sent to, in parallel. A device's answer decides:
 * sent -> marked delivered; dead token -> the device is removed (only if it still has that token);
 * failed -> counted, never retried; retry -> the request is redelivered after a backoff (the
 * provider's Retry-After honoured), and the devices already marked are skipped then. The marks
 * (one cache entry per notification and device, kept until the request's expiry) are written for
 * requests with several devices and read only on a redelivery, so a retry for one device (or a
 * redelivery after a killed worker) does not send again to the others. A request a killed worker
 * had in flight at the provider, or whose ack was lost, may be sent again, with the same collapse
 * id, so the device shows it once (services/push/README.md "Delivery").
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { perRegistry } from "../../platform/metrics.js";
import type { Logger } from "pino";
import type { Cache } from "../../platform/ports/cache.js";
import type { DurableMessage, EventBus, Consumption } from "../../platform/ports/event-bus.js";
import { DEFAULT_RETRY, retryDelayMs, type RetryPolicy } from "./domain/retry.js";
import type { DeviceStore, Notification, Platform, StoredDevice } from "./ports.js";
import type { PushProvider, SendOutcome } from "./providers/provider.js";
import { decodePushRequest, PUSH_DURABLE, PUSH_STREAM_OPTIONS, pushStream, pushSubject } from "./queue.js";

export interface PushWorkerOptions {
  readonly bus: EventBus;
  /** The mesh's keyspace: names its stream and scopes the delivered marks. */
  readonly keyspace: string;
  readonly devices: DeviceStore;
  readonly providers: ReadonlyMap<Platform, PushProvider>;
  /** Where delivered marks live (the engine's cache: Redis, or memory). */
  readonly marks: Cache;
  readonly log: Logger;
  readonly registry?: Registry;
  /** Requests handled at once by this worker. Default 64. */
  readonly concurrency?: number;
  /** Redelivered when not settled within this long (a killed worker's requests). Default 60 s. */
  readonly ackWaitMs?: number;
  readonly retry?: RetryPolicy;
  /** How often the queue's lag is read into the metrics. Default 1 s. */
  readonly lagEveryMs?: number;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** What this worker did since it started (tests and benchmarks read it). */
export interface PushWorkerStats {
  handled: number;
  sent: number;
  retried: number;
  failed: number;
  deadTokens: number;
  expired: number;
  skippedDelivered: number;
  malformed: number;
}

export interface PushWorker {
  readonly stats: PushWorkerStats;
  /** Stops taking requests and waits for those in hand (unsettled ones are redelivered later). */
  stop(): Promise<void>;
}

/** A notification with its text held back: the title (a channel's name, "New message") and the ids only. */
export function withoutPreview(n: Notification): Notification {
  return n.body === "" ? n : { ...n, body: "" };
}

/** Marks outlive the request's expiry by this much (a redelivery right at the expiry still sees them). */
const MARK_MARGIN_MS = 60 * 60_000;

export function startPushWorker(opts: PushWorkerOptions): PushWorker {
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const retry = opts.retry ?? DEFAULT_RETRY;
  const limit = Math.max(1, opts.concurrency ?? 64);
  const metrics = opts.registry ? workerMetrics(opts.registry) : undefined;
  const stats: PushWorkerStats = { handled: 0, sent: 0, retried: 0, failed: 0, deadTokens: 0, expired: 0, skippedDelivered: 0, malformed: 0 };
  const stream = pushStream(opts.keyspace);
  const markKey = (n: Notification, d: StoredDevice): string => `push:sent:${opts.keyspace}:${n.id}:${d.deviceId}`;

  let closed = false;
  let consumption: Consumption | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let lagTimer: NodeJS.Timeout | undefined;
  let inflight = 0;
  let waiters: (() => void)[] = [];
  const idle: (() => void)[] = [];
  const release = (): void => {
    inflight--;
    const w = waiters;
    waiters = [];
    for (const r of w) r();
    if (inflight === 0) for (const r of idle.splice(0)) r();
  };

  const wasDelivered = async (key: string): Promise<boolean> => {
    try {
      return (await opts.marks.get(key)) !== undefined;
    } catch (err) {
      // Without the marks a redelivery may send again (same collapse id): better than not at all.
      opts.log.debug({ err }, "push: reading a delivered mark failed; sending");
      return false;
    }
  };

  const markDone = async (key: string, outcome: string, n: Notification): Promise<void> => {
    try {
      await opts.marks.set(key, outcome, Math.max(60_000, n.expireAtMs - now() + MARK_MARGIN_MS));
    } catch (err) {
      opts.log.debug({ err }, "push: writing a delivered mark failed");
    }
  };

  /**
   * One device: undefined when done with it, else the retry it asks for. `redelivered`: an earlier
   * attempt may have reached some devices (read their marks); `marking`: other devices of the
   * request may ask for a retry (mark this one when done). A first delivery reads no mark: the
   * enqueue marker (services/push/push.ts) already keeps an id from being queued twice.
   */
  const toDevice = async (n: Notification, d: StoredDevice, redelivered: boolean, marking: boolean): Promise<Extract<SendOutcome, { kind: "retry" }> | undefined> => {
    const key = markKey(n, d);
    const done = (outcome: string) => (marking ? markDone(key, outcome, n) : undefined);
    if (redelivered && (await wasDelivered(key))) {
      stats.skippedDelivered++;
      return undefined;
    }
    const provider = opts.providers.get(d.platform);
    if (!provider) {
      stats.failed++;
      metrics?.failed.inc({ provider: d.platform, reason: "no provider" });
      return undefined;
    }
    let outcome: SendOutcome;
    try {
      // The body (a message's text) only to devices whose user allowed previews.
      outcome = await provider.send(d, d.showPreview ? n : withoutPreview(n));
    } catch (err) {
      // A provider throws only for a bug; treat it as retryable rather than lose the request.
      opts.log.warn({ err, provider: d.platform }, "push: provider threw");
      outcome = { kind: "retry", reason: "provider error" };
    }
    switch (outcome.kind) {
      case "sent":
        stats.sent++;
        metrics?.sent.inc({ provider: d.platform });
        await done("sent");
        return undefined;
      case "dead-token": {
        stats.deadTokens++;
        metrics?.deadTokens.inc({ provider: d.platform });
        const removed = await opts.devices.removeIfToken(d.userId, d.deviceId, d.token).catch((err: unknown) => {
          opts.log.warn({ err }, "push: removing a dead device failed");
          return false;
        });
        opts.log.info({ provider: d.platform, reason: outcome.reason, removed }, "push: dead token");
        await done("dead");
        return undefined;
      }
      case "failed":
        stats.failed++;
        metrics?.failed.inc({ provider: d.platform, reason: outcome.reason.slice(0, 60) });
        opts.log.warn({ provider: d.platform, reason: outcome.reason, notification: n.id }, "push: provider refused the notification");
        await done("failed");
        return undefined;
      case "retry":
        stats.retried++;
        metrics?.retried.inc({ provider: d.platform });
        return outcome;
    }
  };

  const handle = async (msg: DurableMessage): Promise<void> => {
    let n: Notification;
    try {
      n = decodePushRequest(msg.data);
    } catch (err) {
      stats.malformed++;
      metrics?.malformed.inc();
      opts.log.warn({ err, seq: msg.seq }, "push: dropping a malformed request");
      msg.ack();
      return;
    }
    try {
      if (now() >= n.expireAtMs) {
        drop(n, "expired before delivery");
        msg.ack();
        return;
      }
      const devices = await opts.devices.list(n.userId);
      // A single device's request is settled by its ack alone: a retry or a lost ack resends to it anyway.
      const redelivered = msg.deliveryCount > 1;
      const marking = devices.length > 1;
      const retries = (await Promise.all(devices.map((d) => toDevice(n, d, redelivered, marking)))).filter((r) => r !== undefined);
      stats.handled++;
      if (retries.length === 0) {
        msg.ack();
        return;
      }
      const retryAfter = Math.max(0, ...retries.map((r) => r.retryAfterMs ?? 0));
      const delay = retryDelayMs(msg.deliveryCount, retryAfter || undefined, retry, random());
      if (now() + delay >= n.expireAtMs) {
        drop(n, "expired while retrying");
        msg.ack();
        return;
      }
      msg.nak(delay);
    } catch (err) {
      // The device store is unreachable: try again soon (the request stays queued).
      opts.log.warn({ err, notification: n.id }, "push: handling a request failed; redelivering");
      msg.nak(Math.min(retry.maxMs, 1_000 + Math.floor(random() * 1_000)));
    }
  };

  const drop = (n: Notification, why: string): void => {
    stats.expired++;
    metrics?.expired.inc();
    opts.log.info({ notification: n.id, why }, "push: dropped past its expiry");
  };

  const readLag = async (): Promise<void> => {
    if (!opts.bus.consumerInfo || !metrics) return;
    try {
      const info = await opts.bus.consumerInfo(stream, PUSH_DURABLE);
      metrics.queuePending.set(info.pending + info.ackPending);
      metrics.queueOldestAge.set(info.oldestUnacked ? Math.max(0, (now() - info.oldestUnacked.getTime()) / 1000) : 0);
    } catch (err) {
      opts.log.debug({ err }, "push: reading the queue lag failed");
    }
  };

  const start = async (attempt: number): Promise<void> => {
    if (closed) return;
    try {
      await opts.bus.ensureStream(stream, [pushSubject(opts.keyspace)], PUSH_STREAM_OPTIONS);
      const c = await opts.bus.consume(
        stream,
        PUSH_DURABLE,
        async (msg) => {
          while (!closed && inflight >= limit) await new Promise<void>((r) => waiters.push(r));
          if (closed) return; // unsettled: redelivered to a live worker after the ack wait
          inflight++;
          void handle(msg).finally(release);
        },
        { ackWaitMs: opts.ackWaitMs ?? 60_000 },
      );
      if (closed) {
        await c.stop();
        return;
      }
      consumption = c;
      if (metrics) {
        lagTimer = setInterval(() => void readLag(), opts.lagEveryMs ?? 1_000);
        lagTimer.unref();
      }
      opts.log.info({ stream, durable: PUSH_DURABLE, concurrency: limit }, "push worker started");
    } catch (err) {
      if (attempt % 10 === 0) opts.log.warn({ err, attempt }, "push worker not started yet; retrying");
      retryTimer = setTimeout(() => void start(attempt + 1), Math.min(5_000, 250 * 2 ** Math.min(attempt, 5)));
      retryTimer.unref();
    }
  };
  void start(0);

  let stopping: Promise<void> | undefined;
  return {
    stats,
    stop() {
      stopping ??= stopNow();
      return stopping;
    },
  };

  async function stopNow(): Promise<void> {
    closed = true;
    if (retryTimer) clearTimeout(retryTimer);
    if (lagTimer) clearInterval(lagTimer);
    for (const r of waiters.splice(0)) r();
    await consumption?.stop();
    if (inflight > 0) await new Promise<void>((r) => idle.push(r));
  }
}

interface WorkerMetrics {
  readonly sent: Counter<"provider">;
  readonly retried: Counter<"provider">;
  readonly failed: Counter<"provider" | "reason">;
  readonly deadTokens: Counter<"provider">;
  readonly expired: Counter;
  readonly malformed: Counter;
  readonly queuePending: Gauge;
  readonly queueOldestAge: Gauge;
}

/** Registered once per registry (perRegistry). */
const workerMetrics = perRegistry((registers): WorkerMetrics => ({
  sent: new Counter({ name: "push_sent_total", help: "Notifications a provider accepted, per provider (one per device)", labelNames: ["provider"], registers }),
  retried: new Counter({ name: "push_retried_total", help: "Sends answered retryable (429, 5xx, network), per provider", labelNames: ["provider"], registers }),
  failed: new Counter({ name: "push_failed_total", help: "Sends refused for good, per provider and reason", labelNames: ["provider", "reason"], registers }),
  deadTokens: new Counter({ name: "push_dead_tokens_total", help: "Devices whose provider said the token is dead (removed), per provider", labelNames: ["provider"], registers }),
  expired: new Counter({ name: "push_expired_total", help: "Requests dropped past their expiry", registers }),
  malformed: new Counter({ name: "push_malformed_total", help: "Queue messages that were not a PushRequest (dropped)", registers }),
  queuePending: new Gauge({ name: "push_queue_pending_messages", help: "Requests queued and not yet settled (JetStream num_pending + num_ack_pending)", registers }),
  queueOldestAge: new Gauge({ name: "push_queue_oldest_age_seconds", help: "Age of the oldest request not yet settled (0 when none)", registers }),
}));
