// The redirect door on the cluster engine (embedded mesh on real Cassandra, NATS, Redis, ZooKeeper).
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { dropKeyspace, infra, uniqueKeyspaceName } from "../testkit/keyspace.js";
import { infraEnv } from "../testkit/servers/index.js";
import { redirectDoorSuite, waitForBackends } from "./redirect-door.suite.js";

let running: Running;
const keyspace = uniqueKeyspaceName("door");
const JWT_SECRET = "redirect-door-test-secret-0123456789abcdef0123";

beforeAll(async () => {
  // The shortener (in the embedded mesh) needs a code key on the cluster engine.
  process.env.SWITCHBOARD_CODE_KEY ??= "redirect-door-test-code-key-0123456789";
  const config = loadConfig({
    ...infraEnv(infra()),
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
  });
  running = await runEmbedded(config, pino({ level: "warn" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: JWT_SECRET } });
  await waitForBackends(running.engine!);
});

afterAll(async () => {
  await running?.close();
  await dropKeyspace(keyspace);
});

redirectDoorSuite("cluster", () => ({ baseUrl: `http://127.0.0.1:${running.gatewayPort}`, engine: running.engine! }));
