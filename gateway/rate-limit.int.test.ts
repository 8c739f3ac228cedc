// The rate limiter on a real Redis of its own: shared counts, then Redis stopped -> per-process fallback.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisCache } from "../platform/engines/cluster/redis-cache.js";
import { startRedis, type RedisHandle } from "../testkit/servers/index.js";
import { CreateRateLimiter } from "./rate-limit.js";

// Fixed minute windows: a wall clock crossing a minute boundary mid-test would reset the counts.
const fixedNow = (): number => 1_800_000_000_000 + 10_000;

let redis: RedisHandle | undefined;
let cache: RedisCache;

beforeAll(async () => {
  redis = await startRedis();
  cache = new RedisCache({ url: redis.url, keyPrefix: `rl-it-${Date.now()}:` });
  for (let i = 0; i < 100 && cache.status().ok === false; i++) await new Promise((r) => setTimeout(r, 50));
});
afterAll(async () => {
  await cache?.close();
  await redis?.stop();
});

describe("rate limiter on Redis", () => {
  const alice = { userId: "alice", kind: "user" as const };

  it("two gateways share one count through Redis", async () => {
    const a = new CreateRateLimiter({ cache, perMinuteIp: 0, perMinuteUser: 4, now: fixedNow });
    const b = new CreateRateLimiter({ cache, perMinuteIp: 0, perMinuteUser: 4, now: fixedNow });
    await a.check("10.0.0.1", alice);
    await b.check("10.0.0.2", alice);
    await a.check("10.0.0.1", alice);
    await b.check("10.0.0.2", alice);
    const e = await b.check("10.0.0.2", alice).catch((err: unknown) => err);
    expect(e).toMatchObject({ kind: "ResourceExhausted" });
    expect((e as { details: { retryAfterMs: number } }).details.retryAfterMs).toBeGreaterThan(0);
    expect(a.isDegraded).toBe(false);
  });

  it("Redis down: creation is never refused for that, limits hold per process", async () => {
    const limiter = new CreateRateLimiter({ cache, perMinuteIp: 3, perMinuteUser: 0, cacheTimeoutMs: 300, now: fixedNow });
    await limiter.check("10.9.9.9", alice);
    await redis!.stop();
    redis = undefined;
    const t0 = Date.now();
    await limiter.check("10.9.9.9", alice);
    await limiter.check("10.9.9.9", alice);
    expect(limiter.isDegraded).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1_500);
    await limiter.check("10.9.9.9", alice);
    await expect(limiter.check("10.9.9.9", alice)).rejects.toMatchObject({ kind: "ResourceExhausted" });
  });
});
