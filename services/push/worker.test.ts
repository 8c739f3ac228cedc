import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryBus } from "../../platform/engines/memory/memory-bus.js";
import { MemoryCache } from "../../platform/engines/memory/memory-cache.js";
import { retryDelayMs } from "./domain/retry.js";
import type { DeviceStore, Notification, Platform, RegisterOutcome, StoredDevice } from "./ports.js";
import type { PushProvider, SendOutcome } from "./providers/provider.js";
import { encodePushRequest, pushSubject, pushStream, PUSH_STREAM_OPTIONS } from "./queue.js";
import { startPushWorker, type PushWorker } from "./worker.js";

const KS = "push_worker_test";
const log = pino({ level: "silent" });

/** Devices in a map: just enough store for the worker (the real ones have their conformance suite). */
class DevicesInMap implements DeviceStore {
  readonly byUser = new Map<string, StoredDevice[]>();
  add(userId: string, deviceId: string, platform: Platform, token: string, showPreview = true): void {
    const d: StoredDevice = { userId, deviceId, platform, token, displayName: "", showPreview, createdAtMs: 0, updatedAtMs: 0 };
    this.byUser.set(userId, [...(this.byUser.get(userId) ?? []), d]);
  }
  async register(): Promise<RegisterOutcome> {
    throw new Error("not used");
  }
  async unregister(): Promise<void> {}
  async list(userId: string): Promise<StoredDevice[]> {
    return [...(this.byUser.get(userId) ?? [])];
  }
  async removeIfToken(userId: string, deviceId: string, token: string): Promise<boolean> {
    const list = this.byUser.get(userId) ?? [];
    const kept = list.filter((d) => !(d.deviceId === deviceId && d.token === token));
    this.byUser.set(userId, kept);
    return kept.length < list.length;
  }
}

/** A provider that answers from a script per token and records every send with its time. */
class ScriptedProvider implements PushProvider {
  readonly sends: { token: string; id: string; at: number; body: string }[] = [];
  constructor(
    readonly platform: Platform,
    private readonly script: Map<string, SendOutcome[]> = new Map(),
  ) {}
  answer(token: string, ...outcomes: SendOutcome[]): this {
    this.script.set(token, outcomes);
    return this;
  }
  async send(d: StoredDevice, n: Notification): Promise<SendOutcome> {
    this.sends.push({ token: d.token, id: n.id, at: Date.now(), body: n.body });
    return this.script.get(d.token)?.shift() ?? { kind: "sent" };
  }
}

const notification = (id: string, userId: string, over: Partial<Notification> = {}): Notification => ({
  id,
  userId,
  title: "t",
  body: "b",
  data: {},
  collapseKey: "",
  expireAtMs: Date.now() + 60_000,
  createdAtMs: Date.now(),
  ...over,
});

const until = async (cond: () => boolean, ms = 5_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("push worker", () => {
  let bus: MemoryBus;
  let worker: PushWorker | undefined;
  afterEach(async () => {
    await worker?.stop();
    bus?.close();
  });

  async function setup(providers: PushProvider[], devices: DevicesInMap, over: { baseMs?: number; maxMs?: number } = {}) {
    bus = new MemoryBus();
    await bus.ensureStream(pushStream(KS), [pushSubject(KS)], PUSH_STREAM_OPTIONS);
    const marks = new MemoryCache();
    worker = startPushWorker({
      bus,
      keyspace: KS,
      devices,
      providers: new Map(providers.map((p) => [p.platform, p])),
      marks,
      log,
      retry: { baseMs: over.baseMs ?? 20, maxMs: over.maxMs ?? 200 },
    });
    return { marks, enqueue: (n: Notification) => bus.publishDurable(pushSubject(KS), encodePushRequest(n), n.id) };
  }

  it("sends to every device of the recipient once and settles the request", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "phone", "fcm", "tok-phone");
    devices.add("u1", "browser", "web-push", "tok-browser");
    devices.add("u2", "other", "fcm", "tok-other");
    const fcm = new ScriptedProvider("fcm");
    const web = new ScriptedProvider("web-push");
    const { enqueue } = await setup([fcm, web], devices);
    await enqueue(notification("n1", "u1"));
    await until(() => worker!.stats.handled === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(fcm.sends.map((s) => s.token)).toEqual(["tok-phone"]);
    expect(web.sends.map((s) => s.token)).toEqual(["tok-browser"]);
    expect(worker!.stats).toMatchObject({ handled: 1, sent: 2, retried: 0 });
  });

  it("holds the text back from devices whose user did not allow previews", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "locked", "apns", "private", false);
    devices.add("u1", "desk", "web-push", "open", true);
    const apns = new ScriptedProvider("apns");
    const web = new ScriptedProvider("web-push");
    const { enqueue } = await setup([apns, web], devices);
    await enqueue(notification("n1", "u1", { title: "climbers", body: "summit at 6" }));
    await until(() => worker!.stats.handled === 1);
    expect(apns.sends.map((s) => s.body)).toEqual([""]);
    expect(web.sends.map((s) => s.body)).toEqual(["summit at 6"]);
  });

  it("retries only the devices that asked for it, after the provider's Retry-After", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "a", "fcm", "ok");
    devices.add("u1", "b", "fcm", "busy");
    const fcm = new ScriptedProvider("fcm").answer("busy", { kind: "retry", reason: "429", retryAfterMs: 150 }, { kind: "retry", reason: "503" });
    const { enqueue } = await setup([fcm], devices);
    await enqueue(notification("n1", "u1"));
    await until(() => fcm.sends.filter((s) => s.token === "busy").length === 3);
    const busy = fcm.sends.filter((s) => s.token === "busy");
    expect(busy[1]!.at - busy[0]!.at).toBeGreaterThanOrEqual(140);
    expect(fcm.sends.filter((s) => s.token === "ok")).toHaveLength(1);
    expect(worker!.stats).toMatchObject({ sent: 2, retried: 2 });
    expect(worker!.stats.skippedDelivered).toBe(2);
  });

  it("removes a device on a dead-token answer and does not retry it", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "gone", "web-push", "dead");
    devices.add("u1", "alive", "web-push", "live");
    const web = new ScriptedProvider("web-push").answer("dead", { kind: "dead-token", reason: "410" });
    const { enqueue } = await setup([web], devices);
    await enqueue(notification("n1", "u1"));
    await until(() => worker!.stats.handled === 1);
    await new Promise((r) => setTimeout(r, 150));
    expect((await devices.list("u1")).map((d) => d.deviceId)).toEqual(["alive"]);
    expect(web.sends).toHaveLength(2);
    expect(worker!.stats).toMatchObject({ deadTokens: 1, sent: 1, retried: 0 });
  });

  it("keeps a device re-registered with a new token when the old token is reported dead", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "d", "fcm", "old");
    const fcm = new ScriptedProvider("fcm");
    fcm.send = async (d: StoredDevice) => {
      // The user re-registers the device with a new token while the old one is in flight.
      devices.byUser.set("u1", [{ ...d, token: "new" }]);
      return { kind: "dead-token", reason: "UNREGISTERED" };
    };
    const { enqueue } = await setup([fcm], devices);
    await enqueue(notification("n1", "u1"));
    await until(() => worker!.stats.handled === 1);
    expect((await devices.list("u1")).map((d) => d.token)).toEqual(["new"]);
  });

  it("counts a refusal as failed, neither retried nor removed", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "d", "apns", "t");
    const apns = new ScriptedProvider("apns").answer("t", { kind: "failed", reason: "PayloadTooLarge" });
    const { enqueue } = await setup([apns], devices);
    await enqueue(notification("n1", "u1"));
    await until(() => worker!.stats.handled === 1);
    await new Promise((r) => setTimeout(r, 150));
    expect(apns.sends).toHaveLength(1);
    expect(await devices.list("u1")).toHaveLength(1);
    expect(worker!.stats).toMatchObject({ failed: 1, retried: 0 });
  });

  it("drops a request already past its expiry without sending", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "d", "fcm", "t");
    const fcm = new ScriptedProvider("fcm");
    const { enqueue } = await setup([fcm], devices);
    await enqueue(notification("old", "u1", { expireAtMs: Date.now() - 1 }));
    await until(() => worker!.stats.expired === 1);
    expect(fcm.sends).toHaveLength(0);
  });

  it("drops a request whose next retry would come after its expiry", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "d", "fcm", "t");
    const fcm = new ScriptedProvider("fcm").answer("t", { kind: "retry", reason: "503", retryAfterMs: 10_000 });
    const { enqueue } = await setup([fcm], devices, { maxMs: 60_000 });
    await enqueue(notification("n1", "u1", { expireAtMs: Date.now() + 2_000 }));
    await until(() => worker!.stats.expired === 1);
    expect(fcm.sends).toHaveLength(1);
  });

  it("a first delivery of a one-device request neither reads nor writes a mark", async () => {
    const devices = new DevicesInMap();
    devices.add("u1", "d", "webhook", "t");
    const hook = new ScriptedProvider("webhook");
    const { marks, enqueue } = await setup([hook], devices);
    let reads = 0;
    let writes = 0;
    const get = marks.get.bind(marks);
    const set = marks.set.bind(marks);
    marks.get = async (k: string) => (reads++, get(k));
    marks.set = async (k: string, v: string, ttl: number) => (writes++, set(k, v, ttl));
    await enqueue(notification("n1", "u1"));
    await until(() => worker!.stats.handled === 1);
    expect(hook.sends).toHaveLength(1);
    expect({ reads, writes }).toEqual({ reads: 0, writes: 0 });
  });

  it("drops a message that is not a PushRequest", async () => {
    const devices = new DevicesInMap();
    await setup([], devices);
    await bus.publishDurable(pushSubject(KS), new Uint8Array([0xff, 0xff, 0xff]), "junk");
    await until(() => worker!.stats.malformed === 1);
  });
});

describe("retry delay", () => {
  const policy = { baseMs: 1_000, maxMs: 60_000 };
  it("doubles per attempt, with half of it jittered, up to the maximum", () => {
    expect(retryDelayMs(1, undefined, policy, 0)).toBe(500);
    expect(retryDelayMs(1, undefined, policy, 0.999)).toBeLessThanOrEqual(1_000);
    expect(retryDelayMs(3, undefined, policy, 0)).toBe(2_000);
    expect(retryDelayMs(3, undefined, policy, 0.5)).toBe(3_000);
    expect(retryDelayMs(40, undefined, policy, 0.999)).toBeLessThanOrEqual(60_000);
    expect(retryDelayMs(40, undefined, policy, 0)).toBe(30_000);
  });
  it("never comes sooner than Retry-After, never later than the maximum", () => {
    expect(retryDelayMs(1, 7_000, policy, 0)).toBe(7_000);
    expect(retryDelayMs(1, 600_000, policy, 0)).toBe(60_000);
  });
});
