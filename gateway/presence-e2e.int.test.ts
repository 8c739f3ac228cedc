// The presence acceptance suite on the cluster engine: real Cassandra (contacts from chat's
// channels), ZooKeeper (the sweeper's lock), NATS (transitions) and Redis (deadlines, the expiry
// index), a keyspace of its own (dropped after).
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../testkit/keyspace.js";
import { infraEnv } from "../testkit/servers/index.js";
import { waitFor } from "../testkit/processes.js";
import { signHs256 } from "./auth/jwt.js";
import { PRESENCE_E2E_ENV, presenceEndToEndSuite } from "./presence-e2e.suite.js";

let running: Running;
const keyspace = uniqueKeyspaceName("presencee2e");
const jwtSecret = "presence-e2e-cluster-secret-0123456789abcdef0123456789";

beforeAll(async () => {
  const config = loadConfig({
    ...infraEnv(infra()),
    ...PRESENCE_E2E_ENV,
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
  });
  running = await runEmbedded(config, pino({ level: "warn" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
  await waitFor("the cluster mesh to be ready", async () => {
    const res = await fetch(`http://127.0.0.1:${running.gatewayPort}/readyz`);
    return res.status === 200 && ((await res.json()) as { degraded: string[] }).degraded.length === 0 ? true : undefined;
  }, 120_000);
});

afterAll(async () => {
  await running?.close();
  await dropKeyspace(keyspace);
});

presenceEndToEndSuite("cluster", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  tokenFor: (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
}));
