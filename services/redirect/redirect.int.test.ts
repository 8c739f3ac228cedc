// Redirect acceptance on the cluster engine: invalidation across two gateway processes, and
// redirects served from the database while Redis is down.
import { create, toBinary } from "@bufbuild/protobuf";
import cassandra from "cassandra-driver";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded } from "../../cmd/mesh.js";
import { LinkChangedSchema, LinkChangeKind } from "../../gen/switchboard/events/v1/events_pb.js";
import { loadConfig } from "../../platform/config.js";
import { openEngine, type Engine } from "../../platform/engine.js";
import { cassandraClientOptions, infra, uniqueKeyspaceName } from "../../testkit/keyspace.js";
import { waitForBackends } from "../../gateway/redirect-door.suite.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../../testkit/processes.js";
import { infraEnv, startRedis } from "../../testkit/servers/index.js";
import type { Link } from "../links/ports.js";
import { createLinkStore } from "../links/store.js";
import { linkChangedSubject } from "./subjects.js";

const keyspace = uniqueKeyspaceName("redirect_acc");
const JWT_SECRET = "redirect-acceptance-secret-0123456789abcdef0123";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const procs: MeshProcess[] = [];
let engine: Engine | undefined;

const status = async (url: string) => {
  const res = await fetch(url, { redirect: "manual" });
  await res.arrayBuffer();
  return { status: res.status, location: res.headers.get("location") };
};
const link = (code: string, longUrl: string): Link => ({ code, longUrl, ownerId: "u1", createdAt: new Date(), redirectType: 302 });
const changed = (code: string, kind: LinkChangeKind, version: bigint) =>
  toBinary(LinkChangedSchema, create(LinkChangedSchema, { code, kind, version }));

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await engine?.close();
  const admin = new cassandra.Client(cassandraClientOptions());
  try {
    await admin.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
  } finally {
    await admin.shutdown();
  }
});

describe("redirect acceptance (cluster engine)", () => {
  const gateways: string[] = [];

  beforeAll(async () => {
    const env: Record<string, string> = {
      ...infraEnv(infra()),
      SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
      SWITCHBOARD_JWT_HS256_SECRET: JWT_SECRET,
      SWITCHBOARD_CODE_KEY: "redirect-acceptance-code-key-0123456789",
    };
    engine = await openEngine(loadConfig(env), pino({ level: "silent" }));
    await waitForBackends(engine);
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      procs.push(spawnSwitchboard(["gateway"], { ...env, SWITCHBOARD_GATEWAY_PORT: String(port) }));
      gateways.push(`http://127.0.0.1:${port}`);
    }
    for (const g of gateways) {
      await waitFor(`${g}/healthz`, async () => ((await fetch(`${g}/healthz`)).status === 200 ? true : undefined), 60_000);
    }
    // Both gateways must be subscribed before the timed part: a probe link, invalidated until both see it.
    const store = await createLinkStore(engine);
    await store.insertIfAbsent(link("probe01", "https://probe.example/"));
    await waitFor("both gateways redirect the probe", async () => {
      const all = await Promise.all(gateways.map((g) => status(`${g}/probe01`)));
      return all.every((r) => r.status === 302) ? true : undefined;
    });
    await store.delete("probe01");
    await waitFor(
      "both gateways subscribed to LinkChanged",
      async () => {
        engine!.bus.publish(linkChangedSubject("probe01"), changed("probe01", LinkChangeKind.DELETED, 2n));
        await sleep(100);
        const all = await Promise.all(gateways.map((g) => status(`${g}/probe01`)));
        return all.every((r) => r.status === 404) ? true : undefined;
      },
      60_000,
    );
  }, 180_000);

  it("a link updated or deleted stops redirecting to the old target everywhere within one second", async () => {
    const store = await createLinkStore(engine!);
    await store.insertIfAbsent(link("acc-upd", "https://old.example/upd"));
    await store.insertIfAbsent(link("acc-del", "https://old.example/del"));
    // Warm near-caches and Redis on both gateways.
    for (let i = 0; i < 3; i++) {
      for (const g of gateways) {
        expect(await status(`${g}/acc-upd`)).toEqual({ status: 302, location: "https://old.example/upd" });
        expect(await status(`${g}/acc-del`)).toEqual({ status: 302, location: "https://old.example/del" });
      }
    }
    // Change in the store, then publish LinkChanged as the shortener does.
    await store.delete("acc-upd");
    await store.insertIfAbsent(link("acc-upd", "https://new.example/upd"));
    await store.delete("acc-del");
    const t0 = Date.now();
    engine!.bus.publish(linkChangedSubject("acc-upd"), changed("acc-upd", LinkChangeKind.UPDATED, 2n));
    engine!.bus.publish(linkChangedSubject("acc-del"), changed("acc-del", LinkChangeKind.DELETED, 2n));
    let elapsed = -1;
    while (Date.now() - t0 < 1_000) {
      const rs = await Promise.all(gateways.flatMap((g) => [status(`${g}/acc-upd`), status(`${g}/acc-del`)]));
      if (rs.every((r) => r.location === null || r.location === "https://new.example/upd")) {
        elapsed = Date.now() - t0;
        expect(rs.filter((_, i) => i % 2 === 0).every((r) => r.location === "https://new.example/upd")).toBe(true);
        expect(rs.filter((_, i) => i % 2 === 1).every((r) => r.status === 404)).toBe(true);
        break;
      }
      await sleep(10);
    }
    console.log(`[redirect] old targets gone on both gateways after ${elapsed} ms`);
    expect(elapsed).toBeGreaterThanOrEqual(0);
    expect(elapsed).toBeLessThan(1_000);
    // And it stays gone (no stale repopulation from Redis).
    await sleep(400);
    for (const g of gateways) {
      expect(await status(`${g}/acc-upd`)).toEqual({ status: 302, location: "https://new.example/upd" });
      expect((await status(`${g}/acc-del`)).status).toBe(404);
    }
  });

  it("Redis stopped mid-test: redirects keep working from the database", async () => {
    // The shortener (in the embedded mesh) needs a code key on the cluster engine.
    process.env.SWITCHBOARD_CODE_KEY ??= "redirect-acceptance-code-key-0123456789";
    const redis = await startRedis();
    const config = loadConfig({
      ...infraEnv(infra()),
      SWITCHBOARD_REDIS_URL: redis.url,
      SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
      SWITCHBOARD_GATEWAY_PORT: "0",
      SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
    });
    const mesh = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: JWT_SECRET } });
    try {
      await waitForBackends(mesh.engine!);
      const base = `http://127.0.0.1:${mesh.gatewayPort}`;
      const store = await createLinkStore(mesh.engine!);
      const codes = Array.from({ length: 20 }, (_, i) => `redis-down-${i}`);
      for (const c of codes) await store.insertIfAbsent(link(c, `https://db.example/${c}`));
      // Half warmed through Redis before the stop, half cold.
      for (const c of codes.slice(0, 10)) expect((await status(`${base}/${c}`)).status).toBe(302);
      expect(await mesh.engine!.cache.get("sb:link:redis-down-0")).toBeDefined();
      await redis.stop();
      const statuses: number[] = [];
      const started = Date.now();
      for (let round = 0; round < 3; round++) {
        for (const c of codes) {
          const r = await status(`${base}/${c}`);
          statuses.push(r.status);
          expect(r.location).toBe(`https://db.example/${c}`);
        }
        // And a change still invalidates (NATS is up; the Redis delete fails quietly).
      }
      expect(statuses.every((s) => s === 302)).toBe(true);
      expect((await status(`${base}/redis-down-unknown`)).status).toBe(404);
      console.log(`[redirect] ${statuses.length} redirects with Redis down in ${Date.now() - started} ms, all 302`);
    } finally {
      await mesh.close();
      await redis.stop().catch(() => undefined);
    }
  }, 120_000);
});
