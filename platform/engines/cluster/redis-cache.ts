import { Redis } from "ioredis";
import { DomainError, invalidArgument, unavailable } from "../../errors.js";
import type { Cache } from "../../ports/cache.js";
import { silentLog, type EngineLog } from "../log.js";

export interface RedisCacheOptions {
  readonly url: string;
  /** Prepended to every key (tests isolate themselves with a random prefix). */
  readonly keyPrefix?: string;
  /** A command that gets no reply within this time fails with Unavailable (default 2000). */
  readonly commandTimeoutMs?: number;
  readonly log?: EngineLog;
}

// Starts a fixed window on the first hit; later hits in the window do not extend it.
const INCREMENT_SCRIPT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n`;

/** The script as an ioredis custom command (defineCommand): sent as EVALSHA, see the constructor. */
const INCREMENT_COMMAND = "switchboardWindowIncrement";
type WithIncrement = { [INCREMENT_COMMAND](key: string, ttlMs: number): Promise<number> };

/**
 * Cache on Redis (ioredis). Never crashes the process on an unreachable server: it reconnects
 * in the background forever (capped backoff), and while disconnected every operation fails
 * at once with Unavailable (no offline queue, so nothing hangs or replays late).
 */
export class RedisCache implements Cache {
  readonly client: Redis;
  private readonly prefix: string;
  private lastError: string | undefined;

  constructor(options: RedisCacheOptions) {
    const log = (options.log ?? silentLog).child({ component: "redis-cache" });
    this.prefix = options.keyPrefix ?? "";
    this.client = new Redis(options.url, {
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2_000,
      commandTimeout: options.commandTimeoutMs ?? 2_000,
      enableReadyCheck: true,
      // Commands issued in the same tick leave in one write: a push worker's or a gateway's
      // concurrent calls (device lists, marks, rate-limit counters) cost one syscall, not dozens.
      enableAutoPipelining: true,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    });
    // Every link creation through the gateway runs this script twice (rate limits per IP and per
    // identity): as a custom command ioredis sends EVALSHA (40 bytes, no script text to write and
    // for Redis to hash) and falls back to EVAL by itself when Redis answers NOSCRIPT (a restarted
    // or flushed server).
    this.client.defineCommand(INCREMENT_COMMAND, { numberOfKeys: 1, lua: INCREMENT_SCRIPT });
    let wasReady = false;
    this.client.on("error", (err: Error) => {
      const msg = err.message || String(err);
      if (msg !== this.lastError) log.warn({ err: msg }, "redis error");
      this.lastError = msg;
    });
    this.client.on("ready", () => {
      this.lastError = undefined;
      if (!wasReady) log.info({}, "redis ready");
      wasReady = true;
    });
    this.client.on("close", () => {
      if (wasReady) log.warn({}, "redis connection closed; reconnecting");
      wasReady = false;
    });
  }

  /** Readiness check: ready plus why not. */
  status(): { ok: boolean; detail: string } {
    const s = this.client.status;
    if (s === "ready") return { ok: true, detail: "ready" };
    return { ok: false, detail: `${s}${this.lastError ? `: ${this.lastError}` : ""}` };
  }

  async ping(): Promise<string> {
    return this.run("ping", () => this.client.ping());
  }

  /** The server's version from INFO (for tests and readiness detail). */
  async serverVersion(): Promise<string> {
    const info = await this.run("info", () => this.client.info("server"));
    return /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? "unknown";
  }

  async get(key: string): Promise<string | undefined> {
    checkKey(key);
    const v = await this.run("get", () => this.client.get(this.prefix + key));
    return v ?? undefined;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    checkKey(key);
    const ttl = checkTtl(ttlMs);
    await this.run("set", () => this.client.set(this.prefix + key, value, "PX", ttl));
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    checkKey(key);
    const ttl = checkTtl(ttlMs);
    const r = await this.run("set", () => this.client.set(this.prefix + key, value, "PX", ttl, "NX"));
    return r === "OK";
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.run("del", () => this.client.del(this.prefix + key));
  }

  async increment(key: string, windowTtlMs: number): Promise<number> {
    checkKey(key);
    const ttl = checkTtl(windowTtlMs);
    const n = await this.run("incr", () => (this.client as unknown as WithIncrement)[INCREMENT_COMMAND](this.prefix + key, ttl));
    return Number(n);
  }

  async close(): Promise<void> {
    this.client.disconnect(false);
  }

  private async run<T>(op: string, f: () => Promise<T>): Promise<T> {
    if (this.client.status !== "ready") {
      throw new DomainError("Unavailable", `redis is unavailable (${this.status().detail})`, { retryAfterMs: 1000 });
    }
    try {
      return await f();
    } catch (err) {
      if (isReplyError(err)) throw new DomainError("Internal", `redis ${op} failed: ${(err as Error).message}`, {}, { cause: err });
      throw unavailable("redis", err);
    }
  }
}

function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === "ReplyError";
}

function checkKey(key: string): void {
  if (key === "") throw invalidArgument("key", "must not be empty");
}

function checkTtl(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw invalidArgument("ttlMs", `must be > 0 (got ${ttlMs})`);
  return Math.max(1, Math.ceil(ttlMs));
}
