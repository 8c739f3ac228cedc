// Redirect acceptance on the cluster engine: redirects served from the database while Redis is
// down. Invalidation across two gateway processes, driven by UpdateLink/DeleteLink through the
// gateway with NATS cut, is gateway/invalidation.int.test.ts.
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { runEmbedded } from "../../cmd/mesh.js";
import { loadConfig } from "../../platform/config.js";
import { dropKeyspace, infra, uniqueKeyspaceName } from "../../testkit/keyspace.js";
import { waitForBackends } from "../../gateway/redirect-door.suite.js";
import { infraEnv, startRedis } from "../../testkit/servers/index.js";
import type { Link } from "../links/ports.js";
import { createLinkStore } from "../links/store.js";

const keyspace = uniqueKeyspaceName("redirect_acc");
const JWT_SECRET = "redirect-acceptance-secret-0123456789abcdef0123";

const status = async (url: string) => {
  const res = await fetch(url, { redirect: "manual" });
  await res.arrayBuffer();
  return { status: res.status, location: res.headers.get("location") };
};
const link = (code: string, longUrl: string): Link => ({ code, longUrl, ownerId: "u1", createdAt: new Date(), redirectType: 302 });

afterAll(async () => {
  await dropKeyspace(keyspace);
});

describe("redirect acceptance (cluster engine)", () => {
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
