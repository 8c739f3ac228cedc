// Push use cases on the memory engine's ports: the enqueue order (marker only after the queue
// stored the request), what happens when the cache or the queue fails, and the registry's codes.
import pino from "pino";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../platform/config.js";
import { openMemoryEngine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { DomainError, isDomainError } from "../../platform/errors.js";
import type { Cache } from "../../platform/ports/cache.js";
import type { EventBus } from "../../platform/ports/event-bus.js";
import { MemoryDeviceStore } from "./adapters/memory-device-store.js";
import { createTargetGuard } from "./adapters/target-guard.js";
import { dedupeKey, Push } from "./push.js";
import { decodePushRequest, pushStream, pushSubject } from "./queue.js";

const KS = "unit_ks";
const NOW = Date.UTC(2030, 0, 1);

function setup(over: { bus?: (b: EventBus) => EventBus; cache?: (c: Cache) => Cache; env?: Record<string, string> } = {}) {
  const engine = openMemoryEngine(silentLog);
  const config = loadConfig(over.env ?? {}).push;
  const bus = over.bus ? over.bus(engine.bus) : engine.bus;
  const cache = over.cache ? over.cache(engine.cache) : engine.cache;
  const guard = createTargetGuard({ hosts: [], allowPrivate: false });
  const store = new MemoryDeviceStore();
  void store.register({ userId: "bob", deviceId: "phone", platform: "fcm", token: "t", displayName: "" }, 5, NOW);
  const push = new Push({ store, bus, cache, keyspace: KS, config, webPushGuard: guard, webhookGuard: guard, log: pino({ level: "silent" }), now: () => NOW });
  return { engine, push };
}

const req = (id: string) => ({ notificationId: id, userId: "bob", title: "t", body: "b", data: {}, expireAtMs: undefined, collapseKey: "" });

async function streamed(bus: EventBus): Promise<string[]> {
  const ids: string[] = [];
  const c = await bus.consume(pushStream(KS), `check-${Math.random()}`, (m) => {
    ids.push(decodePushRequest(m.data).id);
    m.ack();
  });
  await new Promise((r) => setTimeout(r, 100));
  await c.stop();
  return ids;
}

describe("Push.send", () => {
  it("a publish that fails leaves no marker: the retry publishes (and is not answered duplicate)", async () => {
    let failures = 1;
    const { engine, push } = setup({
      bus: (b) => ({
        ...b,
        ensureStream: (...a) => b.ensureStream(...a),
        consume: (...a) => b.consume(...a),
        publishDurable: async (...a) => {
          if (failures-- > 0) throw new DomainError("Unavailable", "nats is down");
          return b.publishDurable(...a);
        },
      }),
    });
    const err = await push.send(req("n1")).catch((e: unknown) => e);
    expect(isDomainError(err) && err.kind).toBe("Unavailable");
    expect((err as Error).message).toContain("retry with the same notification_id");
    expect(await engine.cache.get(dedupeKey(KS, "n1"))).toBeUndefined();
    expect(await push.send(req("n1"))).toEqual({ duplicate: false });
    expect(await engine.cache.get(dedupeKey(KS, "n1"))).toBeDefined();
    expect(await push.send(req("n1"))).toEqual({ duplicate: true });
    expect(await streamed(engine.bus)).toEqual(["n1"]);
  });

  it("a cache that is down neither blocks nor duplicates: the queue's msg-id window answers duplicate", async () => {
    const down = async () => {
      throw new DomainError("Unavailable", "redis is down");
    };
    const { engine, push } = setup({ cache: (c) => ({ ...c, get: down, set: down }) });
    expect(await push.send(req("n2"))).toEqual({ duplicate: false });
    expect(await push.send(req("n2"))).toEqual({ duplicate: true });
    expect(await streamed(engine.bus)).toEqual(["n2"]);
  });

  it("a stream that vanished is made again once; markers are scoped by keyspace", async () => {
    let ensured = 0;
    const { engine, push } = setup({
      bus: (b) => ({ ...b, ensureStream: (...a) => (ensured++, b.ensureStream(...a)), consume: (...a) => b.consume(...a), publishDurable: (...a) => b.publishDurable(...a) }),
    });
    await push.send(req("n3"));
    await push.send(req("n4"));
    expect(ensured).toBe(1);
    expect(dedupeKey("a", "x")).not.toBe(dedupeKey("b", "x"));
    expect(pushSubject(KS)).toContain(KS);
    expect((await streamed(engine.bus)).sort()).toEqual(["n3", "n4"]);
  });

  it("a recipient without devices is answered no_devices: nothing queued, no marker", async () => {
    const { engine, push } = setup();
    expect(await push.send({ ...req("n6"), userId: "nobody" })).toEqual({ duplicate: false, noDevices: true });
    expect(await engine.cache.get(dedupeKey(KS, "n6"))).toBeUndefined();
    expect(await push.send(req("n7"))).toEqual({ duplicate: false });
    expect(await streamed(engine.bus)).toEqual(["n7"]);
  });

  it("sendMany: results in request order; one invalid notification fails the call by its index, nothing queued", async () => {
    const { engine, push } = setup();
    const err = await push.sendMany([req("m1"), { ...req("m2"), title: "x".repeat(201) }]).catch((e: unknown) => e);
    expect(isDomainError(err) && err.kind).toBe("InvalidArgument");
    expect(isDomainError(err) && err.details.field).toBe("notifications[1].title");
    expect((err as Error).message).toMatch(/^notifications\[1\]: title: /);
    expect(await push.sendMany([req("m1"), { ...req("m3"), userId: "nobody" }, req("m1")])).toEqual([{ duplicate: false }, { duplicate: false, noDevices: true }, expect.objectContaining({})]);
    expect(await streamed(engine.bus)).toEqual(["m1"]);
    const none = await push.sendMany([]).catch((e: unknown) => e);
    expect(isDomainError(none) && none.kind).toBe("InvalidArgument");
    const many = await push.sendMany(Array.from({ length: 501 }, (_, i) => req(`b${i}`))).catch((e: unknown) => e);
    expect((many as Error).message).toBe("notifications: must hold 1..500 notifications (got 501)");
  });

  it("an invalid request is refused before anything is read or queued", async () => {
    let touched = false;
    const { push } = setup({ cache: (c) => ({ ...c, get: async (k) => ((touched = true), c.get(k)) }) });
    const err = await push.send({ ...req("n5"), expireAtMs: NOW - 1 }).catch((e: unknown) => e);
    expect(isDomainError(err) && err.kind).toBe("InvalidArgument");
    expect(touched).toBe(false);
  });
});

describe("Push.register", () => {
  it("webhook devices are PERMISSION_DENIED while no webhook host is allowed; the cap is RESOURCE_EXHAUSTED", async () => {
    const { push } = setup({ env: { SWITCHBOARD_PUSH_MAX_DEVICES_PER_USER: "1" } });
    const err = await push.register("u", { deviceId: "h", platform: "webhook", token: "https://hooks.example.com/x", displayName: "" }).catch((e: unknown) => e);
    expect(isDomainError(err) && err.kind).toBe("PermissionDenied");
    expect((err as Error).message).toBe("token: this target may not be called: webhook devices are not enabled on this server (no target hosts are allowed)");
    await push.register("u", { deviceId: "a", platform: "fcm", token: "t", displayName: "" });
    const full = await push.register("u", { deviceId: "b", platform: "fcm", token: "t2", displayName: "" }).catch((e: unknown) => e);
    expect(isDomainError(full) && full.kind).toBe("ResourceExhausted");
  });
});
