/**
 * PresenceService over gRPC (public through the gateway, except ReportDevices): protobuf <->
 * Presence use cases, the sweeper's leadership, and WatchPresence streams on the process's hub.
 * services/presence/README.md describes the design.
 */
import { hostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Counter, Gauge, Histogram } from "prom-client";
import { perRegistry } from "../../platform/metrics.js";
import {
  GetPresenceResponseSchema,
  ListOnlineResponseSchema,
  HeartbeatResponseSchema,
  PresenceService,
  PresenceState,
  ReportDevicesResponseSchema,
  UserPresenceSchema,
  WatchPresenceResponseSchema,
  type DeviceRef,
  type UserPresence,
} from "../../gen/switchboard/presence/v1/presence_pb.js";
import { invalidArgument } from "../../platform/errors.js";
import { requireCaller } from "../../platform/identity.js";
import { createChatStore } from "../chat/store.js";
import type { ServiceModule } from "../module.js";
import { ChatContacts } from "./adapters/chat-contacts.js";
import type { AnnouncerStats } from "./announcer.js";
import { MAX_ONLINE_QUERY, MAX_REPORTED_DEVICES, validateDeviceId, validateUserId, validateUserIds } from "./domain/validate.js";
import { busPublisher, PresenceWatchHub } from "./fanout.js";
import type { DeviceBeat } from "./ports.js";
import { Presence, type PresenceView } from "./presence.js";
import { createPresenceStore } from "./store.js";
import { SweepLeader } from "./sweeper.js";

/** The sweeper's lock node in the Coordinator. */
export const SWEEPER_LOCK_PATH = "/switchboard/presence/sweeper";

export const presenceModule: ServiceModule = {
  name: "presence",
  desc: PresenceService,
  public: true,
  internalMethods: ["ReportDevices", "ListOnline"],
  // Device deadlines and states live in Redis; contacts are read from chat's channels in
  // Cassandra. Transitions ride NATS at most once (WatchPresence misses them while NATS is down;
  // GetPresence still answers), and the sweeper's lock is in ZooKeeper (offline detection pauses
  // without it): neither makes the service unable to answer.
  needs: ["redis", "cassandra"],
  async create({ config, log, engine, registry }) {
    const onError = (what: string, err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err), what }, "presence");
    const chatStore = await createChatStore(engine, log, { writeTimeoutMs: config.chat.writeTimeoutMs });
    const contacts = new ChatContacts(chatStore, {
      maxGroupMembers: config.presence.fanoutMaxGroupMembers,
      ttlMs: config.presence.contactsTtlMs,
    });
    const store = createPresenceStore(engine);
    const presence = new Presence({
      store,
      contacts,
      limiter: engine.cache,
      config: config.presence,
      publish: busPublisher(engine.bus, onError),
      onError,
      ...(registry ? { announce: { stats: announcerMetrics(registry) } } : {}),
    });
    const hub = new PresenceWatchHub(engine.bus, { maxPerCaller: config.presence.watchesPerCaller, onError });
    const sweeper = new SweepLeader({
      coordinator: engine.coordinator,
      path: SWEEPER_LOCK_PATH,
      id: `presence@${hostname()}:${process.pid}`,
      tickMs: sweepTickMs(config.presence.timeoutMs),
      holdMs: sweepHoldMs(config.presence.heartbeatIntervalMs),
      sweep: () => presence.sweep(),
      ping: () => store.ping(),
      onError,
      onLeadership: (leading) => log.info({ leading }, leading ? "presence sweeper: leading" : "presence sweeper: lost the lead"),
    }).start();
    return {
      impl: presenceImpl(presence, hub),
      close: async () => {
        hub.close();
        await sweeper.close();
        presence.announcer.close();
        await store.close?.();
      },
    };
  },
};

/**
 * Announcing under load, in /metrics: how many users wait, how long transitions waited, and how
 * many were dropped (a full queue: the process sheds announcing, never heartbeats). Registered
 * once per registry (perRegistry): a presence module restarted in-process must not register them twice.
 */
const announcerMetrics = perRegistry((registers): AnnouncerStats => {
  const pending = new Gauge({ name: "presence_announce_pending", help: "Users whose transition waits for its contacts lookup", registers });
  const delay = new Histogram({
    name: "presence_announce_delay_seconds",
    help: "Time from a transition's decision to its publication (queue and contacts lookup)",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const dropped = new Counter({
    name: "presence_announcements_dropped_total",
    help: "Transitions not announced because the queue was full or the process closed (they stay in the store: GetPresence sees them)",
    registers,
  });
  return { onPending: (n) => pending.set(n), onDelay: (ms) => delay.observe(ms / 1000), onDropped: (n) => dropped.inc(n) };
});

/**
 * How long a new sweeper (and one whose store came back) waits before sweeping: one heartbeat
 * interval, plus a quarter of it (at least 250 ms) for the clients' timers and the trip.
 */
export function sweepHoldMs(heartbeatIntervalMs: number): number {
  return heartbeatIntervalMs + Math.max(250, Math.floor(heartbeatIntervalMs / 4));
}

/** Offline is seen within the timeout plus one tick: at most 500 ms, at least 50 ms. */
export function sweepTickMs(timeoutMs: number): number {
  return Math.max(50, Math.min(500, Math.floor(timeoutMs / 10)));
}

/** The handlers; exported for tests that build Presence on their own ports. */
export function presenceImpl(presence: Presence, hub: PresenceWatchHub): Partial<ServiceImpl<typeof PresenceService>> {
  const cfg = presence.config;
  const user = (ctx: HandlerContext) => requireCaller(ctx).userId;
  return {
    async heartbeat(req, ctx) {
      await presence.heartbeat(user(ctx), req.deviceId, req.goingOffline);
      return create(HeartbeatResponseSchema, { nextHeartbeatIn: durationFromMs(cfg.heartbeatIntervalMs), timeout: durationFromMs(cfg.timeoutMs) });
    },
    async getPresence(req, ctx) {
      const caller = user(ctx);
      const views = await presence.get(caller, validateUserIds(req.userIds));
      return create(GetPresenceResponseSchema, { presences: views.map(toPb) });
    },
    async *watchPresence(req, ctx) {
      const caller = user(ctx);
      const ids = validateUserIds(req.userIds);
      const watch = hub.watch(caller, ids);
      try {
        watch.start(await presence.snapshotForWatch(caller, ids));
        for await (const v of watch.views(ctx.signal)) yield create(WatchPresenceResponseSchema, { presence: toPb(v) });
      } finally {
        watch.close();
      }
    },
    // Internal (the gateway never forwards it): a chat server's devices, no caller identity.
    async reportDevices(req) {
      if (req.live.length + req.gone.length > MAX_REPORTED_DEVICES) {
        throw invalidArgument("live", `at most ${MAX_REPORTED_DEVICES} devices per report, live and gone together (got ${req.live.length + req.gone.length})`);
      }
      await presence.report(devices(req.live, "live"), devices(req.gone, "gone"));
      return create(ReportDevicesResponseSchema, { nextReportIn: durationFromMs(cfg.heartbeatIntervalMs) });
    },
    // Internal: whether to push (services/chat/offline-push.ts); no caller, so no contact filter.
    async listOnline(req) {
      const ids = validateUserIds(req.userIds, "user_ids", MAX_ONLINE_QUERY);
      return create(ListOnlineResponseSchema, { onlineUserIds: await presence.online(ids) });
    },
  };
}

function devices(refs: readonly DeviceRef[], field: string): DeviceBeat[] {
  return refs.map((r, i) => ({
    userId: validateUserId(r.userId, `${field}[${i}].user_id`),
    deviceId: validateDeviceId(r.deviceId, `${field}[${i}].device_id`),
  }));
}

function toPb(v: PresenceView): UserPresence {
  if (v.state === "unknown") return create(UserPresenceSchema, { userId: v.userId, state: PresenceState.UNSPECIFIED });
  return create(UserPresenceSchema, {
    userId: v.userId,
    state: v.state === "online" ? PresenceState.ONLINE : PresenceState.OFFLINE,
    ...(v.lastSeenMs !== undefined ? { lastSeenTime: timestampFromMs(v.lastSeenMs) } : {}),
  });
}
