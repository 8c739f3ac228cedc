import { describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import { DomainError } from "../platform/errors.js";
import { MemoryCache } from "../platform/engines/memory/memory-cache.js";
import type { Cache } from "../platform/ports/cache.js";
import { toConnectError } from "../platform/grpc/status.js";
import { clientIpOf, CreateRateLimiter, ipBucket } from "./rate-limit.js";

const alice = { userId: "alice", kind: "user" as const };

function refusal(p: Promise<unknown>): Promise<DomainError> {
  return p.then(
    () => {
      throw new Error("expected a refusal");
    },
    (e: unknown) => e as DomainError,
  );
}

describe("CreateRateLimiter", () => {
  it("allows the limit per IP within a minute window, then ResourceExhausted with the time to the window end", async () => {
    let now = 60_000 * 1000 + 15_000; // 15 s into a minute
    const clock = { now: () => now };
    const limiter = new CreateRateLimiter({ cache: new MemoryCache(clock), perMinuteIp: 3, perMinuteUser: 0, now: clock.now });
    for (let i = 0; i < 3; i++) await limiter.check("10.0.0.1", alice);
    const e = await refusal(limiter.check("10.0.0.1", alice));
    expect(e.kind).toBe("ResourceExhausted");
    expect(e.details.retryAfterMs).toBe(45_000);
    expect(e.message).toMatch(/at most 3 link creations per minute from this IP address; retry in 45 s/);
    const ce = toConnectError(e);
    expect(ce.metadata.get("retry-after")).toBe("45");
    // Another IP is unaffected; the next window starts afresh.
    await limiter.check("10.0.0.2", alice);
    now += 45_000;
    await limiter.check("10.0.0.1", alice);
  });

  it("limits per identity across IPs", async () => {
    const limiter = new CreateRateLimiter({ cache: new MemoryCache(), perMinuteIp: 0, perMinuteUser: 2, now: () => 1_800_000_000_000 + 10_000 });
    await limiter.check("10.0.0.1", alice);
    await limiter.check("10.0.0.2", alice);
    const e = await refusal(limiter.check("10.0.0.3", alice));
    expect(e.message).toMatch(/from this account/);
    await limiter.check("10.0.0.3", { userId: "bob", kind: "user" });
    // API-key and JWT identities with the same id are counted apart.
    await limiter.check("10.0.0.3", { userId: "alice", kind: "api_key" });
  });

  it("0 means unlimited", async () => {
    const limiter = new CreateRateLimiter({ cache: new MemoryCache(), perMinuteIp: 0, perMinuteUser: 0 });
    for (let i = 0; i < 100; i++) await limiter.check("10.0.0.1", alice);
  });

  it("degrades to per-process counters when the shared cache fails or hangs, logs once, and recovers", async () => {
    let mode: "down" | "hang" | "up" = "down";
    const backing = new MemoryCache();
    const flaky: Cache = {
      ...backing,
      get: (k) => backing.get(k),
      set: (k, v, t) => backing.set(k, v, t),
      setIfAbsent: (k, v, t) => backing.setIfAbsent(k, v, t),
      delete: (k) => backing.delete(k),
      increment: (k, t) =>
        mode === "down"
          ? Promise.reject(new DomainError("Unavailable", "redis is unavailable"))
          : mode === "hang"
            ? new Promise<number>(() => {})
            : backing.increment(k, t),
    };
    const warnings: string[] = [];
    const infos: string[] = [];
    const log = {
      info: (_o: object, m?: string) => void infos.push(m ?? ""),
      warn: (_o: object, m?: string) => void warnings.push(m ?? ""),
      error: () => {},
      debug: () => {},
      child: () => log,
    };
    const registry = new Registry();
    // Fixed minute windows: a wall clock crossing a minute boundary mid-test would reset the counts.
    const now = () => 1_800_000_000_000 + 10_000;
    const limiter = new CreateRateLimiter({ cache: flaky, perMinuteIp: 2, perMinuteUser: 0, log, registry, cacheTimeoutMs: 50, now });
    await limiter.check("10.0.0.1", alice);
    expect(limiter.isDegraded).toBe(true);
    mode = "hang";
    await limiter.check("10.0.0.1", alice);
    // Still limited while degraded: the local counters keep the same limits.
    expect((await refusal(limiter.check("10.0.0.1", alice))).kind).toBe("ResourceExhausted");
    expect(warnings).toHaveLength(1);
    expect(await registry.getSingleMetricAsString("gateway_rate_limit_fallback_total")).toMatch(/ 3$/m);
    mode = "up";
    await limiter.check("10.0.0.9", alice);
    expect(limiter.isDegraded).toBe(false);
    expect(infos).toContain("rate limiter back on the shared cache");
  });
});

describe("client address", () => {
  const req = (remote: string, xff?: string) =>
    ({ socket: { remoteAddress: remote }, headers: xff ? { "x-forwarded-for": xff } : {} }) as never;

  it("uses the socket address unless a proxy is trusted", () => {
    expect(clientIpOf(req("::ffff:10.1.2.3", "6.6.6.6"), 0)).toBe("10.1.2.3");
    expect(clientIpOf(req("10.0.0.1", "6.6.6.6, 203.0.113.9"), 1)).toBe("203.0.113.9");
    expect(clientIpOf(req("10.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.2"), 2)).toBe("203.0.113.9");
    expect(clientIpOf(req("10.0.0.1", "garbage"), 1)).toBe("10.0.0.1");
    expect(clientIpOf(req("10.0.0.1"), 1)).toBe("10.0.0.1");
  });

  it("buckets IPv6 by /64", () => {
    expect(ipBucket("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(ipBucket("2001:db8:1:2:bbbb:cccc:dddd:eeee")).toBe("2001:db8:1:2::/64");
    expect(ipBucket("::1")).toBe("0:0:0:0::/64");
    expect(ipBucket("192.0.2.1")).toBe("192.0.2.1");
  });
});
