import { describe, expect, it } from "vitest";
import { MemoryCache } from "../../../platform/engines/memory/memory-cache.js";
import type { Cache } from "../../../platform/ports/cache.js";
import { deviceStoreConformance } from "../device-store.conformance.js";
import type { StoredDevice } from "../ports.js";
import { CachedDeviceStore } from "./cached-device-store.js";
import { MemoryDeviceStore } from "./memory-device-store.js";

// The cached store keeps the store's whole contract (it is what the service and the worker use).
deviceStoreConformance("memory behind the device-list cache", async () => new CachedDeviceStore(new MemoryDeviceStore(), new MemoryCache(), { keyspace: "k" }));

const dev = (deviceId: string, token = `t-${deviceId}`) => ({ userId: "u", deviceId, platform: "webhook" as const, token, displayName: "" });

/** Counts reads that reach the store behind the cache. */
class CountingStore extends MemoryDeviceStore {
  reads = 0;
  override async list(userId: string): Promise<StoredDevice[]> {
    this.reads++;
    return super.list(userId);
  }
}

describe("device-list cache", () => {
  it("reads the store once per user while nothing changes; every change is seen at once", async () => {
    let now = 0;
    const inner = new CountingStore();
    const cached = new CachedDeviceStore(inner, new MemoryCache({ now: () => now }), { keyspace: "k" });
    await cached.register(dev("a"), 5, 1);
    // Right after a change the store is read directly (the change's tombstone), then cached again.
    expect((await cached.list("u")).map((d) => d.deviceId)).toEqual(["a"]);
    expect(inner.reads).toBe(1);
    now += 2_001;
    for (let i = 0; i < 10; i++) expect((await cached.list("u")).map((d) => d.deviceId)).toEqual(["a"]);
    expect(inner.reads).toBe(2);
    await cached.register(dev("b"), 5, 2);
    expect((await cached.list("u")).map((d) => d.deviceId)).toEqual(["b", "a"]);
    await cached.unregister("u", "a");
    expect((await cached.list("u")).map((d) => d.deviceId)).toEqual(["b"]);
    expect(await cached.removeIfToken("u", "b", "t-b")).toBe(true);
    expect(await cached.list("u")).toEqual([]);
    now += 2_001;
    expect(await cached.list("u")).toEqual([]);
    const reads = inner.reads;
    expect(await cached.list("u")).toEqual([]);
    expect(inner.reads).toBe(reads);
  });

  it("a hit costs one cache read and no write", async () => {
    const cache = new MemoryCache();
    const cached = new CachedDeviceStore(new MemoryDeviceStore(), cache, { keyspace: "k" });
    await cached.list("u"); // miss: read and cached
    let ops = 0;
    const counting: Cache = {
      get: (k) => (ops++, cache.get(k)),
      set: (k, v, t) => (ops++, cache.set(k, v, t)),
      setIfAbsent: (k, v, t) => (ops++, cache.setIfAbsent(k, v, t)),
      delete: (k) => (ops++, cache.delete(k)),
      increment: (k, t) => (ops++, cache.increment(k, t)),
    };
    expect(await new CachedDeviceStore(new MemoryDeviceStore(), counting, { keyspace: "k" }).list("u")).toEqual([]);
    expect(ops).toBe(1);
  });

  /** A second store on the same cache whose store reads wait for `gate` (a reader overtaken by a change). */
  const slowReader = (inner: MemoryDeviceStore, cache: Cache, gate: Promise<void>, clock?: () => number) =>
    new CachedDeviceStore(
      { ...inner, list: async (u: string) => { const l = await inner.list(u); await gate; return l; }, register: inner.register.bind(inner), unregister: inner.unregister.bind(inner), removeIfToken: inner.removeIfToken.bind(inner) },
      cache,
      { keyspace: "k", ...(clock ? { clock } : {}) },
    );

  it("a reader that fetched the old list and writes it back after a change is never read", async () => {
    let now = 0;
    const cache = new MemoryCache({ now: () => now });
    const inner = new MemoryDeviceStore();
    const cached = new CachedDeviceStore(inner, cache, { keyspace: "k" });
    await cached.register(dev("old"), 5, 1);
    now += 2_001; // the registration's tombstone is gone: the slow reader misses and will write back
    let release!: () => void;
    const stale = slowReader(inner, cache, new Promise<void>((r) => (release = r))).list("u");
    await new Promise((r) => setTimeout(r, 10));
    await cached.unregister("u", "old");
    release();
    expect((await stale).map((d) => d.deviceId)).toEqual(["old"]);
    expect(await cached.list("u")).toEqual([]);
    now += 2_001;
    expect(await cached.list("u")).toEqual([]);
  });

  it("a read slower than the write-back window is not cached (it could outlive the change's tombstone)", async () => {
    let now = 0;
    let clock = 0;
    const cache = new MemoryCache({ now: () => now });
    const inner = new MemoryDeviceStore();
    const cached = new CachedDeviceStore(inner, cache, { keyspace: "k" });
    await cached.register(dev("old"), 5, 1);
    now += 2_001;
    let release!: () => void;
    const stale = slowReader(inner, cache, new Promise<void>((r) => (release = r)), () => clock).list("u");
    await new Promise((r) => setTimeout(r, 10));
    await cached.unregister("u", "old");
    // The reader is held up past the tombstone's life.
    now += 2_001;
    clock += 2_001;
    release();
    expect((await stale).map((d) => d.deviceId)).toEqual(["old"]);
    expect(await cached.list("u")).toEqual([]);
  });

  it("reads the store directly while the cache is down", async () => {
    const down: Cache = {
      get: async () => Promise.reject(new Error("down")),
      set: async () => Promise.reject(new Error("down")),
      setIfAbsent: async () => Promise.reject(new Error("down")),
      delete: async () => Promise.reject(new Error("down")),
      increment: async () => Promise.reject(new Error("down")),
    };
    const cached = new CachedDeviceStore(new MemoryDeviceStore(), down, { keyspace: "k" });
    await cached.register(dev("a"), 5, 1);
    expect((await cached.list("u")).map((d) => d.deviceId)).toEqual(["a"]);
  });
});
