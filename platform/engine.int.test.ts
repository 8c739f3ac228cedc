import { describe, expect, it } from "vitest";
import { infra } from "../testkit/keyspace.js";
import { freePorts } from "../testkit/servers/process.js";
import { loadConfig } from "./config.js";
import { openEngine, type Engine } from "./engine.js";
import { silentLog } from "./engines/log.js";
import { createLinkStore } from "../services/links/store.js";
import { TcpProxy } from "./engines/cluster/testing/tcp-proxy.js";

async function readyWithin(engine: Engine, ms: number): Promise<Awaited<ReturnType<Engine["readiness"]>>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await engine.readiness();
    if (r.ready || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
}

describe("openEngine(cluster)", () => {
  it("returns at once with every backend unreachable; readiness is false with a detail per backend", async () => {
    const [c, z, n, r] = await freePorts(4);
    const config = loadConfig({
      SWITCHBOARD_ENGINE: "cluster",
      SWITCHBOARD_CASSANDRA_CONTACT_POINTS: `127.0.0.1:${c}`,
      SWITCHBOARD_ZOOKEEPER_CONNECT: `127.0.0.1:${z}`,
      SWITCHBOARD_NATS_URL: `nats://127.0.0.1:${n}`,
      SWITCHBOARD_REDIS_URL: `redis://127.0.0.1:${r}`,
    });
    const t0 = Date.now();
    const engine = await openEngine(config, silentLog);
    try {
      expect(Date.now() - t0).toBeLessThan(1_000);
      expect(engine.kind).toBe("cluster");
      await new Promise((res) => setTimeout(res, 500));
      const rd = await engine.readiness();
      console.log("engine.int (all down):", JSON.stringify(rd.checks));
      expect(rd.ready).toBe(false);
      expect(rd.checks.map((ch) => ch.name)).toEqual(["cassandra", "zookeeper", "nats", "redis"]);
      for (const ch of rd.checks) expect(ch.ok).toBe(false);
      expect(rd.checks[0]!.detail).toContain(`127.0.0.1:${c}`);
      expect(rd.checks[1]!.detail).toContain(`127.0.0.1:${z}`);
      expect(rd.checks[2]!.detail).toContain(`127.0.0.1:${n}`);
      expect(rd.checks[3]!.detail).toMatch(/connect|reconnecting|ECONNREFUSED/);
      await expect(engine.cql!.execute("SELECT now() FROM system.local")).rejects.toMatchObject({ kind: "Unavailable" });
      await expect(engine.cache.get("x")).rejects.toMatchObject({ kind: "Unavailable" });
      await expect(engine.coordinator.get("/x")).rejects.toMatchObject({ kind: "Unavailable" });
      await expect(engine.bus.publishDurable("a.b", new Uint8Array(), "m")).rejects.toMatchObject({ kind: "Unavailable" });
      const links = await createLinkStore(engine);
      await expect(links.get("abc")).rejects.toMatchObject({ kind: "Unavailable" });
    } finally {
      await engine.close();
    }
  });

  it("against the run's real servers becomes ready, creates its keyspace and serves links", async () => {
    const i = infra();
    const keyspace = `engine_it_${Date.now().toString(36)}`;
    const config = loadConfig({
      SWITCHBOARD_ENGINE: "cluster",
      SWITCHBOARD_CASSANDRA_CONTACT_POINTS: i.cassandra.contactPoint,
      SWITCHBOARD_CASSANDRA_LOCAL_DC: i.cassandra.localDataCenter,
      SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
      SWITCHBOARD_ZOOKEEPER_CONNECT: i.zookeeper.connectString,
      SWITCHBOARD_NATS_URL: i.nats.url,
      SWITCHBOARD_REDIS_URL: i.redis.url,
    });
    const engine = await openEngine(config, silentLog);
    try {
      const rd = await readyWithin(engine, 30_000);
      console.log("engine.int (all up):", JSON.stringify(rd.checks));
      expect(rd.ready).toBe(true);
      const links = await createLinkStore(engine);
      const link = { code: "eng0001", longUrl: "https://example.org/", ownerId: "u1", createdAt: new Date(), redirectType: 301 as const };
      expect(await links.insertIfAbsent(link)).toBe(true);
      expect(await links.get("eng0001")).toEqual(link);
      await engine.cache.set("engine-it", "1", 5_000);
      expect(await engine.cache.get("engine-it")).toBe("1");
      await engine.cql!.execute(`DROP KEYSPACE IF EXISTS "${keyspace}"`, [], { prepare: false });
    } finally {
      await engine.close();
    }
  });

  it("becomes ready when its backends come up, fails fast while they are cut, and recovers", async () => {
    const i = infra();
    const ports = await freePorts(4);
    const proxies = {
      cassandra: new TcpProxy(ports[0]!, { host: i.cassandra.host, port: i.cassandra.port }),
      zookeeper: new TcpProxy(ports[1]!, { host: "127.0.0.1", port: i.zookeeper.port }),
      nats: new TcpProxy(ports[2]!, { host: "127.0.0.1", port: i.nats.port }),
      redis: new TcpProxy(ports[3]!, { host: "127.0.0.1", port: i.redis.port }),
    };
    const all = Object.values(proxies);
    const keyspace = `engine_rec_${Date.now().toString(36)}`;
    const config = loadConfig({
      SWITCHBOARD_ENGINE: "cluster",
      SWITCHBOARD_CASSANDRA_CONTACT_POINTS: `127.0.0.1:${ports[0]}`,
      SWITCHBOARD_CASSANDRA_LOCAL_DC: i.cassandra.localDataCenter,
      SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
      SWITCHBOARD_ZOOKEEPER_CONNECT: `127.0.0.1:${ports[1]}`,
      SWITCHBOARD_ZOOKEEPER_SESSION_TIMEOUT_MS: "30000",
      SWITCHBOARD_NATS_URL: `nats://127.0.0.1:${ports[2]}`,
      SWITCHBOARD_REDIS_URL: `redis://127.0.0.1:${ports[3]}`,
    });
    const engine = await openEngine(config, silentLog);
    try {
      await new Promise((res) => setTimeout(res, 300));
      expect((await engine.readiness()).ready).toBe(false);

      // Backends appear after the process started.
      await Promise.all(all.map((p) => p.up()));
      const up = await readyWithin(engine, 30_000);
      console.log("engine.int (came up):", JSON.stringify(up.checks));
      expect(up.ready).toBe(true);
      const got: string[] = [];
      engine.bus.subscribe("engine.rec", (m) => void got.push(new TextDecoder().decode(m.data)));
      await engine.cache.set("rec", "1", 10_000);

      // Cut Redis and NATS: fail fast, readiness names them.
      await proxies.redis.down();
      await proxies.nats.down();
      const deadline = Date.now() + 5_000;
      let rd = await engine.readiness();
      while ((rd.checks[3]!.ok || rd.checks[2]!.ok) && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 50));
        rd = await engine.readiness();
      }
      expect(rd.ready).toBe(false);
      expect(rd.checks.filter((c) => !c.ok).map((c) => c.name).sort()).toEqual(["nats", "redis"]);
      const t0 = Date.now();
      await expect(engine.cache.get("rec")).rejects.toMatchObject({ kind: "Unavailable" });
      expect(Date.now() - t0).toBeLessThan(500);

      // Back again: same clients recover, subscriptions resume.
      await proxies.redis.up();
      await proxies.nats.up();
      expect((await readyWithin(engine, 20_000)).ready).toBe(true);
      expect(await engine.cache.get("rec")).toBe("1");
      const until = Date.now() + 5_000;
      while (got.length === 0 && Date.now() < until) {
        engine.bus.publish("engine.rec", new TextEncoder().encode("again"));
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(got[0]).toBe("again");
      await engine.cql!.execute(`DROP KEYSPACE IF EXISTS "${keyspace}"`, [], { prepare: false });
    } finally {
      await engine.close();
      await Promise.all(all.map((p) => p.down()));
    }
  });
});
