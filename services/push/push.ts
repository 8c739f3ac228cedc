/**
 * Push use cases: the device registry (for the authenticated caller only: every method takes
 * the caller's id from the identity, never from the request) and the enqueue side of
 * SendNotification. services/push/README.md says why each choice.
 */
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { PushConfig } from "../../platform/config.js";
import { DomainError, invalidArgument, isDomainError } from "../../platform/errors.js";
import type { Cache } from "../../platform/ports/cache.js";
import type { EventBus, PublishAck } from "../../platform/ports/event-bus.js";
import type { TargetGuard } from "./adapters/target-guard.js";
import { validateDeviceId, validateNotification, validateRegistration, type NotificationRequest } from "./domain/validate.js";
import type { DeviceStore, Notification, Platform, StoredDevice } from "./ports.js";
import { encodePushRequest, PUSH_STREAM_OPTIONS, pushStream, pushSubject } from "./queue.js";

/** SendNotification is idempotent by notification id for this long (the contract says at least 24 h). */
export const DEDUPE_TTL_MS = 24 * 3_600_000;

/** The marker that a notification id was queued, scoped by mesh: meshes may share one Redis. */
export const dedupeKey = (keyspace: string, notificationId: string): string => `push:queued:${keyspace}:${notificationId}`;

export interface PushDeps {
  readonly store: DeviceStore;
  readonly bus: EventBus;
  /** Holds the 24 h dedupe markers (Redis on the cluster engine). */
  readonly cache: Cache;
  /** config.cassandra.keyspace: names the queue's stream and subject and scopes the markers. */
  readonly keyspace: string;
  readonly config: PushConfig;
  readonly webPushGuard: TargetGuard;
  readonly webhookGuard: TargetGuard;
  readonly log: Logger;
  readonly registry?: Registry;
  readonly now?: () => number;
}

export interface RegisterRequest {
  readonly deviceId: string;
  /** undefined = PLATFORM_UNSPECIFIED or a value this server does not know. */
  readonly platform: Platform | undefined;
  readonly token: string;
  readonly displayName: string;
  /** Notifications to this device may carry their body; absent = false. */
  readonly showPreview?: boolean;
}

export type SendRequest = NotificationRequest;

/** What a send answered: already queued under this id, or the recipient has no device (nothing queued). */
export interface EnqueueOutcome {
  readonly duplicate: boolean;
  readonly noDevices?: true;
}

/** SendNotifications takes at most this many at once. */
export const MAX_BATCH = 500;

export class Push {
  private readonly now: () => number;
  private queueReady: Promise<void> | undefined;
  private readonly queued: Counter<"outcome"> | undefined;
  private readonly refused: Counter<"reason"> | undefined;

  constructor(private readonly deps: PushDeps) {
    this.now = deps.now ?? Date.now;
    if (deps.registry) {
      this.queued = new Counter({
        name: "push_notifications_enqueued_total",
        help: "SendNotification calls answered, by outcome (queued, duplicate, no devices)",
        labelNames: ["outcome"],
        registers: [deps.registry],
      });
      this.refused = new Counter({
        name: "push_registrations_refused_total",
        help: "RegisterDevice calls refused by policy, by reason (target, full)",
        labelNames: ["reason"],
        registers: [deps.registry],
      });
    }
  }

  async register(userId: string, req: RegisterRequest): Promise<StoredDevice> {
    const reg = validateRegistration(req, this.deps.config.allowPrivateTargets);
    if (reg.target) await this.checkTarget(reg.platform, reg.target);
    const cap = this.deps.config.maxDevicesPerUser;
    const out = await this.deps.store.register(
      { userId, deviceId: reg.deviceId, platform: reg.platform, token: reg.token, displayName: reg.displayName, showPreview: req.showPreview === true },
      cap,
      this.now(),
    );
    if (out.kind === "full") {
      this.refused?.inc({ reason: "full" });
      throw new DomainError("ResourceExhausted", `device_id: you already have ${cap} devices registered (the most allowed); unregister one first`, {
        field: "device_id",
      });
    }
    return out.device;
  }

  async unregister(userId: string, deviceId: string): Promise<void> {
    await this.deps.store.unregister(userId, validateDeviceId(deviceId));
  }

  list(userId: string): Promise<StoredDevice[]> {
    return this.deps.store.list(userId);
  }

  /**
   * Queues a notification once per id. Order matters: the marker is written only after the
   * queue has stored the request, so a crash in between makes a retry publish again (JetStream's
   * msg-id window drops the copy) instead of answering duplicate for something never queued.
   */
  async send(req: SendRequest): Promise<EnqueueOutcome> {
    const nowMs = this.now();
    const { expireAtMs } = validateNotification(req, nowMs, this.deps.config);
    return this.enqueue(req, expireAtMs, nowMs);
  }

  /**
   * send() for many notifications: all validated before any is queued (the first invalid one
   * fails the call, named by its index), then queued concurrently; results in request order.
   */
  async sendMany(reqs: readonly SendRequest[]): Promise<EnqueueOutcome[]> {
    if (reqs.length === 0 || reqs.length > MAX_BATCH) throw invalidArgument("notifications", `must hold 1..${MAX_BATCH} notifications (got ${reqs.length})`);
    const nowMs = this.now();
    const expiries = reqs.map((r, i) => {
      try {
        return validateNotification(r, nowMs, this.deps.config).expireAtMs;
      } catch (err) {
        if (!isDomainError(err)) throw err;
        const field = `notifications[${i}]${err.details.field ? `.${err.details.field}` : ""}`;
        throw new DomainError(err.kind, `notifications[${i}]: ${err.message}`, { ...err.details, field });
      }
    });
    return Promise.all(reqs.map((r, i) => this.enqueue(r, expiries[i]!, nowMs)));
  }

  /** A validated notification: the dedupe marker, the recipient's devices, then the queue. */
  private async enqueue(req: SendRequest, expireAtMs: number, nowMs: number): Promise<EnqueueOutcome> {
    const key = dedupeKey(this.deps.keyspace, req.notificationId);
    if (await this.markerPresent(key)) {
      this.queued?.inc({ outcome: "duplicate" });
      return { duplicate: true };
    }
    // Most chat recipients have no push device: answered with one cache read, nothing queued.
    if ((await this.deps.store.list(req.userId)).length === 0) {
      this.queued?.inc({ outcome: "no devices" });
      return { duplicate: false, noDevices: true };
    }
    const n: Notification = {
      id: req.notificationId,
      userId: req.userId,
      title: req.title,
      body: req.body,
      data: req.data,
      collapseKey: req.collapseKey,
      expireAtMs,
      createdAtMs: nowMs,
    };
    const ack = await this.publish(n);
    await this.deps.cache.set(key, String(ack.seq), DEDUPE_TTL_MS).catch((err: unknown) => {
      // JetStream's own window still dedupes retries for PUSH_STREAM_OPTIONS.duplicateWindowMs.
      this.deps.log.warn({ err: errText(err), notificationId: n.id }, "push: could not record the dedupe marker");
    });
    this.queued?.inc({ outcome: ack.duplicate ? "duplicate" : "queued" });
    return { duplicate: ack.duplicate };
  }

  private async checkTarget(platform: Platform, target: URL): Promise<void> {
    const webhook = platform === "webhook";
    const field = webhook ? "token" : "token.endpoint";
    const hosts = webhook ? this.deps.config.webhookHosts : this.deps.config.webPushHosts;
    const reason =
      hosts.length === 0
        ? `${webhook ? "webhook" : "Web Push"} devices are not enabled on this server (no target hosts are allowed)`
        : await (webhook ? this.deps.webhookGuard : this.deps.webPushGuard)(target);
    if (reason === undefined) return;
    this.refused?.inc({ reason: "target" });
    throw new DomainError("PermissionDenied", `${field}: this target may not be called: ${reason}`, { field });
  }

  /** A cache that cannot answer is no marker: the queue's msg-id window still catches a recent retry. */
  private async markerPresent(key: string): Promise<boolean> {
    try {
      return (await this.deps.cache.get(key)) !== undefined;
    } catch (err) {
      this.deps.log.warn({ err: errText(err) }, "push: dedupe markers unreadable; relying on the queue's duplicate window");
      return false;
    }
  }

  private async publish(n: Notification): Promise<PublishAck> {
    const subject = pushSubject(this.deps.keyspace);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.ensureQueue();
        return await this.deps.bus.publishDurable(subject, encodePushRequest(n), n.id);
      } catch (err) {
        // The stream vanished (deleted by an operator, a NATS wiped): make it again, once.
        if (attempt === 0 && isDomainError(err) && err.kind === "FailedPrecondition") {
          this.queueReady = undefined;
          continue;
        }
        throw new DomainError("Unavailable", "the push queue is unavailable; nothing was queued for sure: retry with the same notification_id", { retryAfterMs: 1_000 }, { cause: err });
      }
    }
  }

  private ensureQueue(): Promise<void> {
    if (!this.queueReady) {
      const k = this.deps.keyspace;
      this.queueReady = this.deps.bus.ensureStream(pushStream(k), [pushSubject(k)], PUSH_STREAM_OPTIONS).catch((err: unknown) => {
        this.queueReady = undefined;
        throw err;
      });
    }
    return this.queueReady;
  }
}

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
