/**
 * The device store behind a shared cache of each user's device list (Redis on the cluster engine):
 * every notification needs its recipient's devices, and a Cassandra read per notification cost
 * the database about 1 ms of CPU each on the reference box (bench/push.ts), the worker's limit.
 *
 * Staleness is bounded without trusting a delete to win races: a user's list is cached under a
 * key that names the user's current *version*, a random token every change replaces. A reader that
 * fetched an old list and writes it back late writes it under the old version, which nobody reads
 * any more. The version outlives every list cached under the version before it (VERSION_TTL >
 * LIST_TTL + the slowest read), so when an unchanged user's version expires, no stale list is
 * left to be found under "no version". A change whose version write fails (Redis down) leaves
 * the old list in use for at most LIST_TTL. Without the cache the store is read directly.
 */
import { randomUUID } from "node:crypto";
import type { Cache } from "../../../platform/ports/cache.js";
import type { DeviceStore, NewDevice, RegisterOutcome, StoredDevice } from "../ports.js";

const LIST_TTL_MS = 60_000;
const VERSION_TTL_MS = 2 * LIST_TTL_MS;

export interface CachedDeviceStoreOptions {
  /** Scopes the keys (one mesh's keyspace). */
  readonly keyspace: string;
  readonly onError?: (what: string, err: unknown) => void;
}

export class CachedDeviceStore implements DeviceStore {
  private readonly onError: (what: string, err: unknown) => void;

  constructor(
    private readonly inner: DeviceStore,
    private readonly cache: Cache,
    private readonly opts: CachedDeviceStoreOptions,
  ) {
    this.onError = opts.onError ?? (() => {});
  }

  async list(userId: string): Promise<StoredDevice[]> {
    let listKey: string | undefined;
    try {
      const version = (await this.cache.get(this.versionKey(userId))) ?? "none";
      listKey = `push:devices:${this.opts.keyspace}:${userId}:${version}`;
      const hit = await this.cache.get(listKey);
      if (hit !== undefined) return JSON.parse(hit) as StoredDevice[];
    } catch (err) {
      this.onError("reading cached devices", err);
      listKey = undefined;
    }
    const devices = await this.inner.list(userId);
    if (listKey) await this.cache.set(listKey, JSON.stringify(devices), LIST_TTL_MS).catch((err: unknown) => this.onError("caching devices", err));
    return devices;
  }

  async register(device: NewDevice, maxDevices: number, nowMs: number): Promise<RegisterOutcome> {
    const out = await this.inner.register(device, maxDevices, nowMs);
    if (out.kind === "registered") await this.changed(device.userId);
    return out;
  }

  async unregister(userId: string, deviceId: string): Promise<void> {
    await this.inner.unregister(userId, deviceId);
    await this.changed(userId);
  }

  async removeIfToken(userId: string, deviceId: string, token: string): Promise<boolean> {
    const removed = await this.inner.removeIfToken(userId, deviceId, token);
    if (removed) await this.changed(userId);
    return removed;
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }

  private versionKey(userId: string): string {
    return `push:devices-version:${this.opts.keyspace}:${userId}`;
  }

  private async changed(userId: string): Promise<void> {
    await this.cache.set(this.versionKey(userId), randomUUID(), VERSION_TTL_MS).catch((err: unknown) => this.onError("bumping the devices version", err));
  }
}
