/**
 * Push for members who are offline on every device (issue 14): after a message is persisted and
 * delivered live, the chat server asks presence which recipients are online (internal
 * `PresenceService/ListOnline`, the published, debounced state) and queues a notification for
 * each of the others (internal `PushService/SendNotification`). The notification id
 * `chat:<message id>:<user id>` is the dedupe key, so a retried ask never queues twice; the
 * channel id is the collapse key (newer notifications of a channel replace older ones).
 *
 * Never on the send path: the sender's ack does not wait for presence or push. Asks are queued
 * in memory (bounded: beyond `maxPending` messages they are dropped and counted) and retried
 * with backoff while presence or push answer UNAVAILABLE; when that fails too, asks are dropped
 * (counted) for a few seconds rather than queued behind a dead service. A chat server that dies
 * with asks in its queue loses those pushes. The messages themselves are stored either way and
 * reach the devices by Sync (services/push/README.md).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { Counter, type Registry } from "prom-client";
import { PresenceService, ListOnlineRequestSchema } from "../../gen/switchboard/presence/v1/presence_pb.js";
import { PushService, SendNotificationRequestSchema, SendNotificationsRequestSchema } from "../../gen/switchboard/push/v1/push_pb.js";
import { createGrpcClient, type GrpcClient } from "../../platform/grpc/client.js";
import { perRegistry } from "../../platform/metrics.js";
import { RecentValues } from "../../platform/recent-values.js";
import type { Channel, MessageRecord } from "./ports.js";

/** Told of each new message once it is stored and delivered live. */
export interface MessageNotifier {
  messageSent(message: MessageRecord, memberIds: readonly string[]): void;
}

export interface OfflinePushOptions {
  /** "host:port" of the presence service. */
  readonly presenceTarget: string;
  /** "host:port" of the push service. */
  readonly pushTarget: string;
  /** The channel, for its name (the notification's title): read only when someone is offline. */
  readonly channelOf: (channelId: string) => Promise<Pick<Channel, "id" | "name"> | undefined>;
  readonly onError?: (what: string, err: unknown) => void;
  readonly registry?: Registry;
  /** Messages waiting for their asks; more are dropped (counted). Default 10,000. */
  readonly maxPending?: number;
  /** Messages whose asks run at once. Default 8. */
  readonly concurrency?: number;
  /** Attempts per call while the service answers UNAVAILABLE. Default 3. */
  readonly attempts?: number;
}

/** Registered once per registry (perRegistry): a chat module restarted in-process builds another OfflinePush. */
const offlinePushMetrics = perRegistry((registers) => ({
  queued: new Counter({ name: "chat_push_requests_total", help: "Notifications queued for members offline on every device", registers }),
  dropped: new Counter({ name: "chat_push_dropped_total", help: "Messages whose offline pushes were dropped (too many pending asks, or the chat server shut down)", registers }),
  failed: new Counter({ name: "chat_push_failures_total", help: "Asks to presence or push (a batch of notifications) that failed after their retries", registers }),
}));

/** After asks failed past their retries, new ones are dropped for this long (not queued behind a dead service). */
const PAUSE_AFTER_FAILURE_MS = 5_000;
/** Presence's ListOnline takes at most this many ids per call. */
const ONLINE_QUERY = 1_000;
const BODY_MAX = 2_000;
/** Messages whose recipients are looked up in one ListOnline call (the ids are de-duplicated). */
const JOBS_PER_LOOKUP = 32;
/** Notifications per SendNotifications call (the push service takes at most 500). */
const PUSH_BATCH = 500;
const TITLE_MAX = 200;

/** A channel's name is read once a minute at most (a rename shows in pushes within that). */
const NAME_TTL_MS = 60_000;
const NAMES_MAX = 10_000;

interface Job {
  readonly message: MessageRecord;
  readonly memberIds: readonly string[];
}

export class OfflinePush implements MessageNotifier {
  private readonly presence: GrpcClient<typeof PresenceService>;
  private readonly push: GrpcClient<typeof PushService>;
  private readonly queue: Job[] = [];
  private readonly names = new RecentValues<Pick<Channel, "id" | "name">>({ ttlMs: NAME_TTL_MS, maxEntries: NAMES_MAX });
  private running = 0;
  private closed = false;
  /** While presence or push is unreachable, asks are dropped (counted) instead of piling up retries. */
  private pausedUntil = 0;
  private lastErrorLogAt = 0;
  private readonly idle: (() => void)[] = [];
  private readonly onError: (what: string, err: unknown) => void;
  private readonly metrics: { queued: Counter; dropped: Counter; failed: Counter } | undefined;

  constructor(private readonly opts: OfflinePushOptions) {
    this.presence = createGrpcClient(PresenceService, opts.presenceTarget, { defaultTimeoutMs: 5_000 });
    this.push = createGrpcClient(PushService, opts.pushTarget, { defaultTimeoutMs: 5_000 });
    this.onError = opts.onError ?? (() => {});
    this.metrics = opts.registry ? offlinePushMetrics(opts.registry) : undefined;
  }

  messageSent(message: MessageRecord, memberIds: readonly string[]): void {
    if (this.closed) return;
    if (!memberIds.some((u) => u !== message.senderId)) return;
    if (this.queue.length >= (this.opts.maxPending ?? 10_000) || Date.now() < this.pausedUntil) {
      this.metrics?.dropped.inc();
      return;
    }
    this.queue.push({ message, memberIds });
    this.pump();
  }

  /** Pending asks (tests). */
  get pending(): number {
    return this.queue.length + this.running;
  }

  /** Resolves once every queued ask has been made (tests). */
  async settled(): Promise<void> {
    if (this.pending === 0) return;
    await new Promise<void>((r) => this.idle.push(r));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.queue.length > 0) this.metrics?.dropped.inc(this.queue.length);
    this.queue.length = 0;
    this.presence.close?.();
    this.push.close?.();
  }

  private pump(): void {
    while (this.running < (this.opts.concurrency ?? 8) && this.queue.length > 0) {
      // Messages waiting together share their presence lookups.
      const jobs = this.queue.splice(0, JOBS_PER_LOOKUP);
      this.running += jobs.length;
      void this.handle(jobs)
        .catch((err: unknown) => {
          this.metrics?.failed.inc();
          this.failed("offline push: presence unreachable, pushes for these messages dropped", err);
        })
        .finally(() => {
          this.running -= jobs.length;
          this.pump();
          if (this.pending === 0) for (const r of this.idle.splice(0)) r();
        });
    }
  }

  private async handle(jobs: readonly Job[]): Promise<void> {
    const everyone = [...new Set(jobs.flatMap((j) => j.memberIds.filter((u) => u !== j.message.senderId)))];
    const online = new Set<string>();
    for (let i = 0; i < everyone.length; i += ONLINE_QUERY) {
      const ids = everyone.slice(i, i + ONLINE_QUERY);
      const r = await this.retrying(() => this.presence.listOnline(create(ListOnlineRequestSchema, { userIds: ids })));
      for (const u of r.onlineUserIds) online.add(u);
    }
    const channel = (id: string) => this.names.get(id, () => this.opts.channelOf(id).then((c) => c ?? { id, name: "" }));
    const offline = jobs.flatMap(({ message, memberIds }) => memberIds.filter((u) => u !== message.senderId && !online.has(u)).map((userId) => ({ message, userId })));
    const requests = await Promise.all(offline.map(async ({ message, userId }) => notificationFor(message, await channel(message.channelId), userId)));
    const calls: Promise<void>[] = [];
    for (let i = 0; i < requests.length; i += PUSH_BATCH) {
      const notifications = requests.slice(i, i + PUSH_BATCH);
      calls.push(
        this.retrying(() => this.push.sendNotifications(create(SendNotificationsRequestSchema, { notifications }))).then((r) => {
          this.metrics?.queued.inc(r.results.filter((x) => !x.noDevices && !x.duplicate).length);
        }),
      );
    }
    const failed = (await Promise.allSettled(calls)).filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      this.metrics?.failed.inc(failed.length);
      this.failed(`offline push: ${failed.length} of ${calls.length} batches of notifications not queued`, failed[0]!.reason);
    }
  }

  /** Pauses asks for a while after a failure that outlived its retries; logs at most every 10 s. */
  private failed(what: string, err: unknown): void {
    const now = Date.now();
    this.pausedUntil = now + PAUSE_AFTER_FAILURE_MS;
    if (now - this.lastErrorLogAt < 10_000) return;
    this.lastErrorLogAt = now;
    this.onError(what, err);
  }

  private async retrying<T>(call: () => Promise<T>): Promise<T> {
    const attempts = this.opts.attempts ?? 3;
    for (let i = 1; ; i++) {
      try {
        return await call();
      } catch (err) {
        const retryable = err instanceof ConnectError && (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded);
        if (!retryable || i >= attempts || this.closed) throw err;
        await new Promise((r) => setTimeout(r, 200 * 2 ** i * (0.5 + Math.random() / 2)));
      }
    }
  }
}

/** The SendNotification for one offline recipient of a message. */
export function notificationFor(message: MessageRecord, channel: Pick<Channel, "id" | "name">, userId: string) {
  return create(SendNotificationRequestSchema, {
    notificationId: `chat:${message.id}:${userId}`,
    userId,
    title: (channel.name || "New message").slice(0, TITLE_MAX),
    body: truncate(message.text, BODY_MAX),
    data: { channel_id: channel.id, message_id: message.id.toString(), sender_id: message.senderId, kind: "chat.message" },
    collapseKey: channel.id.slice(0, 64),
  });
}

/** At most `max` characters, cut at a code point boundary, with an ellipsis when cut. */
function truncate(text: string, max: number): string {
  const points = Array.from(text);
  return points.length <= max ? text : points.slice(0, max - 1).join("") + "…";
}
