// The gateway smoke suite on the cluster engine: real Cassandra, ZooKeeper, NATS and Redis.
import cassandra from "cassandra-driver";
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { startMetricsServer, type MetricsServer } from "../platform/metrics-server.js";
import { createLinkStore } from "../services/links/store.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../testkit/keyspace.js";
import { infraEnv } from "../testkit/servers/index.js";
import { waitFor } from "../testkit/processes.js";
import { signHs256 } from "./auth/jwt.js";
import { linksEndToEndSuite } from "./links-e2e.suite.js";
import { gatewaySmokeSuite } from "./smoke.suite.js";

let running: Running;
let metricsServer: MetricsServer;
const keyspace = uniqueKeyspaceName("smoke");
const jwtSecret = "smoke-test-secret-0123456789abcdef0123456789";

beforeAll(async () => {
  const info = infra();
  console.log(
    `[smoke] cassandra ${info.cassandra.version}, zookeeper ${info.zookeeper.version}, nats ${info.nats.version}, redis ${info.redis.version}`,
  );
  const config = loadConfig({
    ...infraEnv(info),
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
  });
  running = await runEmbedded(config, pino({ level: "warn" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
  metricsServer = await startMetricsServer(running.metrics!, "127.0.0.1", 0);
  await waitFor("the cluster mesh to be ready", async () => {
    const res = await fetch(`http://127.0.0.1:${running.gatewayPort}/readyz`);
    // 200 comes once redirects can be served; the suite wants every service up as well.
    return res.status === 200 && ((await res.json()) as { degraded: string[] }).degraded.length === 0 ? true : undefined;
  });
});

afterAll(async () => {
  await metricsServer?.close();
  await running?.close();
  await dropKeyspace(keyspace);
});

gatewaySmokeSuite("cluster", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  metricsUrl: `http://127.0.0.1:${metricsServer.port}/metrics`,
  token: signHs256({ sub: "smoke-user", exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
  insertLink: async (link) => {
    await (await createLinkStore(running.engine!)).insertIfAbsent(link);
  },
}));

linksEndToEndSuite("cluster", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  token: signHs256({ sub: "e2e-user", exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
}));
