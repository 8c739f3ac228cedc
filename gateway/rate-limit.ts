/**
 * Abuse limits on link creation (CreateLink, BulkCreateLinks, REST shorten): per client IP and
 * per authenticated identity, fixed one-minute windows counted with `Cache.increment` (Redis on
 * the cluster engine, so every gateway shares the counts; a map on the memory engine).
 *
 * - Window: the current UTC minute; over the limit -> ResourceExhausted (HTTP 429) with
 *   `retryAfterMs` = time until the minute ends (Retry-After header / `retry-after` metadata).
 *   Refused attempts count too (a client hammering stays limited).
 * - BulkCreateLinks is charged per item (`streamCharger`, used by gateway/bulk-create-limit.ts):
 *   each item is one creation; once a stream meets a refusal in a window, its later items in
 *   that window are refused without asking the cache again (counts only grow in a window).
 * - Redis down or slow (> `cacheTimeoutMs`): the limiter falls back to per-process in-memory
 *   counters (same limits, per gateway process), logs once per outage and counts
 *   `gateway_rate_limit_fallback_total`; it never fails a creation because Redis is down.
 *   When Redis answers again it logs once and goes back to it.
 * - IPv6 clients are counted per /64 (one host usually owns a whole /64).
 */
import { isIPv4, isIPv6 } from "node:net";
import type http from "node:http";
import type http2 from "node:http2";
import { Counter, type Registry } from "prom-client";
import { DomainError } from "../platform/errors.js";
import type { EngineLog } from "../platform/engines/log.js";
import { silentLog } from "../platform/engines/log.js";
import { MemoryCache } from "../platform/engines/memory/memory-cache.js";
import type { Identity } from "../platform/identity.js";
import type { Cache } from "../platform/ports/cache.js";

export const WINDOW_MS = 60_000;

export interface CreateRateLimiterOptions {
  readonly cache: Cache;
  readonly perMinuteIp: number;
  readonly perMinuteUser: number;
  readonly log?: EngineLog;
  readonly registry?: Registry;
  /** Give up on the shared cache after this and use the local counters (default 500 ms). */
  readonly cacheTimeoutMs?: number;
  readonly now?: () => number;
}

export class CreateRateLimiter {
  private readonly local = new MemoryCache();
  private degraded = false;
  private readonly log: EngineLog;
  private readonly now: () => number;
  private readonly limited?: Counter<"scope">;
  private readonly fallbacks?: Counter;

  constructor(private readonly opts: CreateRateLimiterOptions) {
    this.log = (opts.log ?? silentLog).child({ component: "rate-limit" });
    this.now = opts.now ?? Date.now;
    if (opts.registry) {
      this.limited = new Counter({
        name: "gateway_rate_limited_total",
        help: "Link creations refused by the rate limiter, by scope (ip, user)",
        labelNames: ["scope"] as const,
        registers: [opts.registry],
      });
      this.fallbacks = new Counter({
        name: "gateway_rate_limit_fallback_total",
        help: "Rate-limit checks counted in per-process memory because the shared cache (Redis) failed",
        registers: [opts.registry],
      });
    }
  }

  /** True while counting locally because the shared cache failed. */
  get isDegraded(): boolean {
    return this.degraded;
  }

  /** Counts one creation; throws DomainError ResourceExhausted (with retryAfterMs) when over a limit. */
  async check(clientIp: string | undefined, identity: Identity | undefined): Promise<void> {
    const now = this.now();
    const window = Math.floor(now / WINDOW_MS);
    const retryAfterMs = (window + 1) * WINDOW_MS - now;
    const ttl = retryAfterMs + 1_000;
    const checks: Promise<void>[] = [];
    if (this.opts.perMinuteIp > 0 && clientIp) {
      checks.push(this.one(`rl:create:ip:${ipBucket(clientIp)}:${window}`, ttl, this.opts.perMinuteIp, "ip", retryAfterMs));
    }
    if (this.opts.perMinuteUser > 0 && identity) {
      const key = `rl:create:${identity.kind}:${identity.userId}:${window}`;
      checks.push(this.one(key, ttl, this.opts.perMinuteUser, "user", retryAfterMs));
    }
    const results = await Promise.allSettled(checks);
    const refused = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (refused) throw refused.reason;
  }

  /**
   * One stream's charger: each call counts one creation and resolves to the refusal
   * (ResourceExhausted) or undefined. Calls may overlap; the cache applies them in call order
   * (one connection, one pipeline), so the first items of a stream are the ones allowed.
   */
  streamCharger(clientIp: string | undefined, identity: Identity | undefined): () => Promise<DomainError | undefined> {
    let refusedWindow = -1;
    let refusal: DomainError | undefined;
    return async () => {
      const window = Math.floor(this.now() / WINDOW_MS);
      if (refusal && window === refusedWindow) return refusal;
      try {
        await this.check(clientIp, identity);
        return undefined;
      } catch (e) {
        if (!(e instanceof DomainError) || e.kind !== "ResourceExhausted") throw e;
        refusedWindow = window;
        refusal = e;
        return e;
      }
    };
  }

  private async one(key: string, ttl: number, limit: number, scope: "ip" | "user", retryAfterMs: number): Promise<void> {
    const n = await this.count(key, ttl);
    if (n > limit) {
      this.limited?.inc({ scope });
      const who = scope === "ip" ? "this IP address" : "this account";
      throw new DomainError(
        "ResourceExhausted",
        `rate limit exceeded: at most ${limit} link creations per minute from ${who}; retry in ${Math.ceil(retryAfterMs / 1000)} s`,
        { retryAfterMs },
      );
    }
  }

  private async count(key: string, ttl: number): Promise<number> {
    try {
      const n = await withTimeout(this.opts.cache.increment(key, ttl), this.opts.cacheTimeoutMs ?? 500);
      if (this.degraded) {
        this.degraded = false;
        this.log.info({}, "rate limiter back on the shared cache");
      }
      return n;
    } catch (err) {
      if (!this.degraded) {
        this.degraded = true;
        this.log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "rate limiter: shared cache unavailable; counting per process in memory until it is back",
        );
      }
      this.fallbacks?.inc();
      return this.local.increment(key, ttl);
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref?.();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Rate-limit bucket of an address: IPv4 as is, IPv6 by its /64. */
export function ipBucket(ip: string): string {
  if (!isIPv6(ip)) return ip;
  const groups = expandIPv6(ip);
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : ip;
}

function expandIPv6(ip: string): string[] | undefined {
  let text = ip.split("%")[0]!;
  // Embedded IPv4 tail (e.g. 64:ff9b::1.2.3.4) -> two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1]!.split(".").map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const fill = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill("0");
  const all = [...h, ...fill, ...t];
  return all.length === 8 ? all.map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")) : undefined;
}

type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;

function normalizeIp(raw: string): string | undefined {
  let ip = raw.trim();
  if (ip.startsWith("[")) ip = ip.slice(1, ip.indexOf("]") > 0 ? ip.indexOf("]") : undefined);
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(ip)) ip = ip.split(":")[0]!;
  if (ip.toLowerCase().startsWith("::ffff:") && isIPv4(ip.slice(7))) ip = ip.slice(7);
  return isIPv4(ip) || isIPv6(ip) ? ip : undefined;
}

/**
 * The client's address: the socket's remote address, or with `trustProxyHops` = N > 0 the
 * N-th address from the right of X-Forwarded-For (each trusted proxy appends the address it
 * saw; anything further left is client-supplied and ignored). Falls back to the socket.
 */
export function clientIpOf(req: AnyRequest, trustProxyHops: number): string | undefined {
  const peer = peerAddressOf(req);
  const socketIp = peer ? normalizeIp(peer) : undefined;
  if (trustProxyHops <= 0) return socketIp;
  const xff = req.headers["x-forwarded-for"];
  const text = Array.isArray(xff) ? xff.join(",") : xff;
  if (!text) return socketIp;
  const hops = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const pick = hops[hops.length - trustProxyHops] ?? hops[0];
  return (pick && normalizeIp(pick)) ?? socketIp;
}

/**
 * The peer's address. On HTTP/2 (h2c and TLS) the one-port server hands HTTP/2 a stream that
 * replays the sniffed preface; Node wraps it in a socket of its own whose remoteAddress is undefined, while the
 * wrapped stream (`.stream`) carries the address copied from the TCP socket.
 */
function peerAddressOf(req: AnyRequest): string | undefined {
  const socket = req.socket as (AnyRequest["socket"] & { stream?: { remoteAddress?: unknown } }) | undefined;
  const wrapped = socket?.stream?.remoteAddress;
  return socket?.remoteAddress ?? (typeof wrapped === "string" ? wrapped : undefined);
}
