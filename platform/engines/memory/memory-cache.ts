import { invalidArgument } from "../../errors.js";
import type { Cache } from "../../ports/cache.js";
import { systemClock, type Clock } from "./clock.js";

interface Entry {
  value: string;
  expiresAt: number;
}

/** In-process Cache. Expired entries are dropped lazily on access and by a sweep every 1024 writes. */
export class MemoryCache implements Cache {
  private readonly entries = new Map<string, Entry>();
  private writes = 0;

  constructor(private readonly clock: Clock = systemClock) {}

  async get(key: string): Promise<string | undefined> {
    if (key === "") throw invalidArgument("key", "must not be empty");
    return this.live(key)?.value;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    check(key, ttlMs);
    this.write(key, { value, expiresAt: this.clock.now() + ttlMs });
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    check(key, ttlMs);
    if (this.live(key)) return false;
    this.write(key, { value, expiresAt: this.clock.now() + ttlMs });
    return true;
  }

  async delete(key: string): Promise<void> {
    if (key === "") throw invalidArgument("key", "must not be empty");
    this.entries.delete(key);
  }

  async increment(key: string, windowTtlMs: number): Promise<number> {
    check(key, windowTtlMs);
    const e = this.live(key);
    if (!e) {
      this.write(key, { value: "1", expiresAt: this.clock.now() + windowTtlMs });
      return 1;
    }
    const n = (Number.parseInt(e.value, 10) || 0) + 1;
    e.value = String(n);
    return n;
  }

  private live(key: string): Entry | undefined {
    const e = this.entries.get(key);
    if (e && e.expiresAt <= this.clock.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  private write(key: string, e: Entry): void {
    this.entries.set(key, e);
    if (++this.writes % 1024 === 0) {
      const now = this.clock.now();
      for (const [k, v] of this.entries) if (v.expiresAt <= now) this.entries.delete(k);
    }
  }
}

function check(key: string, ttlMs: number): void {
  if (key === "") throw invalidArgument("key", "must not be empty");
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw invalidArgument("ttlMs", `must be > 0 (got ${ttlMs})`);
}
