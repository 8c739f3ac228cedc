import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { infra } from "../../../testkit/keyspace.js";
import { freePort, startRedis } from "../../../testkit/servers/index.js";
import { makeRunDir, spawnSupervised, tcpExchange, type SupervisedProcess } from "../../../testkit/servers/process.js";
import { isDomainError } from "../../errors.js";
import { cacheConformance } from "../../ports/cache.conformance.js";
import { RedisCache } from "./redis-cache.js";

async function connected(cache: RedisCache, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cache.status().ok) {
    if (Date.now() > deadline) throw new Error(`redis not ready: ${cache.status().detail}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function kindOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => "resolved", (err: unknown) => err);
  return isDomainError(e) ? e.kind : String(e);
}

describe("RedisCache against the run's real Redis", () => {
  it("talks to a real redis-server", async () => {
    const cache = new RedisCache({ url: infra().redis.url });
    try {
      await connected(cache);
      const v = await cache.serverVersion();
      console.log(`redis-cache.int: redis-server ${v} at ${infra().redis.url}`);
      expect(v).toBe(infra().redis.version);
      expect(v).toMatch(/^\d+\.\d+/);
    } finally {
      await cache.close();
    }
  });

  it("increment keeps counting after Redis forgets its scripts (restart, SCRIPT FLUSH)", async () => {
    const prefix = `t:${randomUUID().slice(0, 8)}:`;
    const cache = new RedisCache({ url: infra().redis.url, keyPrefix: prefix });
    try {
      await connected(cache);
      expect(await cache.increment("flushed", 60_000)).toBe(1);
      // The script is now cached by its SHA; a restarted server would not know it.
      await cache.client.script("FLUSH");
      expect(await cache.increment("flushed", 60_000)).toBe(2);
      expect(await cache.client.pttl(`${prefix}flushed`)).toBeGreaterThan(0);
      expect(await cache.increment("flushed", 60_000)).toBe(3);
    } finally {
      await cache.close();
    }
  });

  cacheConformance(async () => {
    const cache = new RedisCache({ url: infra().redis.url, keyPrefix: `t:${randomUUID().slice(0, 8)}:` });
    await connected(cache);
    return { cache, cleanup: () => cache.close() };
  });
});

/** redis-server on a given port (so a client pointed at that port can see it come back). */
async function redisOnPort(port: number): Promise<SupervisedProcess> {
  const dir = makeRunDir("redis-restart");
  const proc = await spawnSupervised({
    name: "redis",
    dir,
    command: "redis-server",
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--set-proc-title", "no"],
    graceSeconds: 3,
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const pong = await tcpExchange(port, "PING\r\n", { until: (r) => r.includes("\r\n") }).catch(() => "");
    if (pong.startsWith("+PONG")) return proc;
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`redis on ${port} did not start`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("RedisCache failure behaviour", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  });

  it("fails fast with Unavailable once its Redis is stopped, and recovers when Redis is back on that port", async () => {
    const own = await startRedis();
    cleanups.push(() => own.stop());
    const cache = new RedisCache({ url: own.url });
    cleanups.push(() => cache.close());
    await connected(cache);
    await cache.set("k", "v", 60_000);
    expect(await cache.get("k")).toBe("v");

    await own.stop();
    // Give the client a moment to notice the closed socket.
    const deadline = Date.now() + 5_000;
    while (cache.status().ok && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(cache.status().ok).toBe(false);

    const t0 = Date.now();
    expect(await kindOf(cache.get("k"))).toBe("Unavailable");
    expect(await kindOf(cache.increment("n", 1000))).toBe("Unavailable");
    expect(Date.now() - t0).toBeLessThan(500);

    const again = await redisOnPort(own.port);
    cleanups.push(() => again.stop());
    await connected(cache, 15_000);
    expect(await cache.get("k")).toBeUndefined(); // a new, empty server
    await cache.set("k", "back", 60_000);
    expect(await cache.get("k")).toBe("back");
  });

  it("a client started while nothing listens does not throw, reports not ready, and fails fast", async () => {
    const port = await freePort();
    const cache = new RedisCache({ url: `redis://127.0.0.1:${port}` });
    cleanups.push(() => cache.close());
    await new Promise((r) => setTimeout(r, 200));
    expect(cache.status().ok).toBe(false);
    const t0 = Date.now();
    expect(await kindOf(cache.setIfAbsent("a", "b", 1000))).toBe("Unavailable");
    expect(Date.now() - t0).toBeLessThan(200);
  });
});
