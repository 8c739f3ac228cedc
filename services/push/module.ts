/**
 * PushService over gRPC (public through the gateway, except SendNotification): protobuf <-> the
 * Push use cases. services/push/README.md describes the design.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  DeviceSchema,
  ListDevicesResponseSchema,
  Platform as PbPlatform,
  PushService,
  RegisterDeviceResponseSchema,
  SendNotificationResponseSchema,
  SendNotificationsResponseSchema,
  UnregisterDeviceResponseSchema,
  type Device,
  type SendNotificationRequest,
  type SendNotificationResponse,
} from "../../gen/switchboard/push/v1/push_pb.js";
import { requireCaller } from "../../platform/identity.js";
import type { ServiceDeps, ServiceModule } from "../module.js";
import { CachedDeviceStore } from "./adapters/cached-device-store.js";
import { createGuardedLookup, createTargetGuard } from "./adapters/target-guard.js";
import { targetPolicies, type TargetPolicy } from "./domain/targets.js";
import { createProviders } from "./providers/index.js";
import { startPushWorker } from "./worker.js";
import { tokenHint } from "./domain/validate.js";
import type { DeviceStore, Platform, StoredDevice } from "./ports.js";
import { Push, type EnqueueOutcome, type SendRequest } from "./push.js";
import { createDeviceStore } from "./store.js";

export const pushModule: ServiceModule = {
  name: "push",
  desc: PushService,
  public: true,
  internalMethods: ["SendNotification", "SendNotifications"],
  // Devices live in Cassandra and SendNotification answers only once JetStream stored the
  // request. Redis holds the 24 h dedupe markers and cached device lists only: without it
  // JetStream's msg-id window still dedupes retries and lists come from Cassandra, so it is not a need.
  needs: ["cassandra", "nats"],
  async create(deps) {
    const core = createPushCore(deps);
    // Every push process also drains the queue (unless its worker concurrency is 0): workers share
    // one durable, so adding processes adds senders, and a killed one's requests go to the others
    // after the ack wait.
    const { config, log, engine, registry } = deps;
    const policies = targetPolicies(config.push);
    const guardOf = (policy: TargetPolicy) => ({ checkTarget: createTargetGuard(policy), lookup: createGuardedLookup(policy) });
    const providers = createProviders(config.pushProviders, log, { webPushGuard: guardOf(policies.webPush), webhookGuard: guardOf(policies.webhook) });
    const worker = config.push.workerConcurrency === 0 ? undefined : startPushWorker({
      bus: engine.bus,
      keyspace: config.cassandra.keyspace,
      devices: core.store,
      providers,
      marks: engine.cache,
      log: log.child({ component: "push-worker" }),
      concurrency: config.push.workerConcurrency,
      ackWaitMs: config.push.ackWaitMs,
      retry: { baseMs: config.push.retryBaseMs, maxMs: config.push.retryMaxMs },
      ...(registry ? { registry } : {}),
    });
    return {
      impl: core.impl,
      async drain() {
        // Requests in hand finish (or are redelivered after the ack wait); no new ones are taken.
        await worker?.stop();
      },
      close: async () => {
        await worker?.stop();
        await Promise.all([...providers.values()].map((p) => p.close?.()));
        await core.close();
      },
    };
  },
};

export interface PushCore {
  readonly push: Push;
  /** The device store, shared with the worker (one per engine on the memory engine). */
  readonly store: DeviceStore;
  readonly impl: Partial<ServiceImpl<typeof PushService>>;
  close(): Promise<void>;
}

/** The registry and the enqueue side, built from the service's deps. */
export function createPushCore({ config, log, engine, registry }: ServiceDeps): PushCore {
  // Every notification reads its recipient's devices: from the shared cache, Cassandra on a miss.
  const store = new CachedDeviceStore(createDeviceStore(engine, log), engine.cache, {
    keyspace: config.cassandra.keyspace,
    onError: (what, err) => log.debug({ err, what }, "push device cache"),
  });
  const policies = targetPolicies(config.push);
  const push = new Push({
    store,
    bus: engine.bus,
    cache: engine.cache,
    keyspace: config.cassandra.keyspace,
    config: config.push,
    webPushGuard: createTargetGuard(policies.webPush),
    webhookGuard: createTargetGuard(policies.webhook),
    log,
    ...(registry ? { registry } : {}),
  });
  return {
    push,
    store,
    impl: pushImpl(push),
    // The store belongs to the engine (memory: shared per engine; Cassandra: the engine's session).
    close: async () => {},
  };
}

/** The handlers; exported for tests that build Push on their own ports. */
export function pushImpl(push: Push): Partial<ServiceImpl<typeof PushService>> {
  const user = (ctx: HandlerContext) => requireCaller(ctx).userId;
  return {
    async registerDevice(req, ctx) {
      const caller = user(ctx);
      const device = await push.register(caller, {
        deviceId: req.deviceId,
        platform: fromPb(req.platform),
        token: req.token,
        displayName: req.displayName,
        showPreview: req.showPreview,
      });
      return create(RegisterDeviceResponseSchema, { device: toPb(device) });
    },
    async unregisterDevice(req, ctx) {
      await push.unregister(user(ctx), req.deviceId);
      return create(UnregisterDeviceResponseSchema, {});
    },
    async listDevices(_req, ctx) {
      const devices = await push.list(user(ctx));
      return create(ListDevicesResponseSchema, { devices: devices.map(toPb) });
    },
    // Internal (the gateway never forwards it): user_id names the recipient, not the caller.
    async sendNotification(req) {
      return sendResponse(await push.send(sendRequest(req)));
    },
    async sendNotifications(req) {
      const results = await push.sendMany(req.notifications.map(sendRequest));
      return create(SendNotificationsResponseSchema, { results: results.map(sendResponse) });
    },
  };
}

function sendRequest(req: SendNotificationRequest): SendRequest {
  return {
    notificationId: req.notificationId,
    userId: req.userId,
    title: req.title,
    body: req.body,
    data: req.data,
    expireAtMs: req.expireTime ? timestampMs(req.expireTime) : undefined,
    collapseKey: req.collapseKey,
  };
}

function sendResponse(r: EnqueueOutcome): SendNotificationResponse {
  return create(SendNotificationResponseSchema, { duplicate: r.duplicate, noDevices: r.noDevices === true });
}

const PLATFORMS: ReadonlyMap<PbPlatform, Platform> = new Map([
  [PbPlatform.FCM, "fcm"],
  [PbPlatform.APNS, "apns"],
  [PbPlatform.WEB_PUSH, "web-push"],
  [PbPlatform.WEBHOOK, "webhook"],
]);

const fromPb = (p: PbPlatform): Platform | undefined => PLATFORMS.get(p);

function toPb(d: StoredDevice): Device {
  const platform = [...PLATFORMS].find(([, v]) => v === d.platform)![0];
  return create(DeviceSchema, {
    deviceId: d.deviceId,
    platform,
    tokenHint: tokenHint(d.token),
    displayName: d.displayName,
    showPreview: d.showPreview,
    createTime: timestampFromMs(d.createdAtMs),
    updateTime: timestampFromMs(d.updatedAtMs),
  });
}
