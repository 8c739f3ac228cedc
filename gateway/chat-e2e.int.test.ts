// The chat acceptance suite on the cluster engine: real Cassandra, ZooKeeper, NATS and Redis,
// a keyspace of its own (dropped after).
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../testkit/keyspace.js";
import { infraEnv } from "../testkit/servers/index.js";
import { waitFor } from "../testkit/processes.js";
import { signHs256 } from "./auth/jwt.js";
import { chatEndToEndSuite } from "./chat-e2e.suite.js";

let running: Running;
const keyspace = uniqueKeyspaceName("chate2e");
const jwtSecret = "chat-e2e-cluster-secret-0123456789abcdef0123456789";

beforeAll(async () => {
  const config = loadConfig({
    ...infraEnv(infra()),
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
  });
  running = await runEmbedded(config, pino({ level: "warn" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
  await waitFor("the cluster mesh to be ready", async () => {
    const res = await fetch(`http://127.0.0.1:${running.gatewayPort}/readyz`);
    // 200 comes as soon as the gateway's own Cassandra is up; every service serving = nothing degraded.
    return res.status === 200 && ((await res.json()) as { degraded: string[] }).degraded.length === 0 ? true : undefined;
  }, 120_000);
});

afterAll(async () => {
  await running?.close();
  await dropKeyspace(keyspace);
});

chatEndToEndSuite("cluster", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  tokenFor: (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
}));
