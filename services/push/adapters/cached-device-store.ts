/**
 * The device store behind a shared cache of each user's device list (Redis on the cluster engine):
 * every notification needs its recipient's devices (SendNotification to skip users without any,
 * the worker to send), and a Cassandra read per notification cost the database about 1 ms of CPU
 * each on the reference box (bench/push.ts). A hit is one GET.
 *
 * Staleness without trusting a delete to win races: a change (register, unregister, dead-token
 * removal) overwrites the user's entry with a *tombstone* for TOMBSTONE_TTL. A reader that misses
 * reads the store and writes the list back only if the key is still absent (setIfAbsent), and only
 * when its read took less than WRITE_BACK_WITHIN. A reader whose store read predates a change
 * started before that change's tombstone was written, so it writes back either while the
 * tombstone is there (refused) or before it (overwritten by it); WRITE_BACK_WITHIN <
 * TOMBSTONE_TTL keeps a slow reader from landing after the tombstone expired. While the tombstone
 * lives, readers go to the store. A change whose tombstone write fails (cache down) leaves the
 * old list in use for at most LIST_TTL. Without the cache the store is read directly.
 */
import type { Cache } from "../../../platform/ports/cache.js";
import type { DeviceStore, NewDevice, RegisterOutcome, StoredDevice } from "../ports.js";

const LIST_TTL_MS = 60_000;
// Short, because every notification to a user who just changed devices reads the store meanwhile
// (a registration storm followed by pushes read Cassandra per notification for the whole window).
const TOMBSTONE_TTL_MS = 2_000;
const WRITE_BACK_WITHIN_MS = 1_000;
const TOMBSTONE = "changed";

export interface CachedDeviceStoreOptions {
  /** Scopes the keys (one mesh's keyspace). */
  readonly keyspace: string;
  readonly onError?: (what: string, err: unknown) => void;
  /** A monotonic clock in ms (tests slow a reader down with it). */
  readonly clock?: () => number;
}

export class CachedDeviceStore implements DeviceStore {
  private readonly onError: (what: string, err: unknown) => void;
  private readonly clock: () => number;

  constructor(
    private readonly inner: DeviceStore,
    private readonly cache: Cache,
    private readonly opts: CachedDeviceStoreOptions,
  ) {
    this.onError = opts.onError ?? (() => {});
    this.clock = opts.clock ?? (() => performance.now());
  }

  async list(userId: string): Promise<StoredDevice[]> {
    const key = this.key(userId);
    const started = this.clock();
    let writeBack = false;
    try {
      const hit = await this.cache.get(key);
      if (hit !== undefined && hit !== TOMBSTONE) return JSON.parse(hit) as StoredDevice[];
      writeBack = hit === undefined;
    } catch (err) {
      this.onError("reading cached devices", err);
    }
    const devices = await this.inner.list(userId);
    if (writeBack && this.clock() - started < WRITE_BACK_WITHIN_MS) {
      await this.cache.setIfAbsent(key, JSON.stringify(devices), LIST_TTL_MS).catch((err: unknown) => this.onError("caching devices", err));
    }
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

  private key(userId: string): string {
    return `push:devices:${this.opts.keyspace}:${userId}`;
  }

  private async changed(userId: string): Promise<void> {
    await this.cache.set(this.key(userId), TOMBSTONE, TOMBSTONE_TTL_MS).catch((err: unknown) => this.onError("marking the device list changed", err));
  }
}
