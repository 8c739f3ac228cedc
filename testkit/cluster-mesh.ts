// The embedded mesh on the cluster engine for one integration test file: every service and the
// gateway in this process on the run's real Cassandra, ZooKeeper, NATS and Redis, a keyspace of
// its own (dropped after), HS256 dev tokens. Call at the top level of the file.
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { signHs256 } from "../gateway/auth/jwt.js";
import { loadConfig } from "../platform/config.js";
import { dropKeyspace, infra, uniqueKeyspaceName } from "./keyspace.js";
import { waitFor } from "./processes.js";
import { infraEnv } from "./servers/index.js";

export interface ClusterMesh {
  readonly keyspace: string;
  running(): Running;
  baseUrl(): string;
  tokenFor(sub: string): string;
}

export function useClusterMesh(prefix: string, env: Readonly<Record<string, string>> = {}): ClusterMesh {
  let running: Running | undefined;
  const keyspace = uniqueKeyspaceName(prefix);
  const jwtSecret = `${prefix}-cluster-secret-0123456789abcdef0123456789`;
  beforeAll(async () => {
    const config = loadConfig({
      ...infraEnv(infra()),
      ...env,
      SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
      SWITCHBOARD_GATEWAY_PORT: "0",
      SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
    });
    running = await runEmbedded(config, pino({ level: "warn" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
    const url = `http://127.0.0.1:${running.gatewayPort}/readyz`;
    await waitFor("the cluster mesh to be ready", async () => {
      const res = await fetch(url);
      // 200 comes as soon as the gateway's own Cassandra is up; every service serving = nothing degraded.
      return res.status === 200 && ((await res.json()) as { degraded: string[] }).degraded.length === 0 ? true : undefined;
    }, 120_000);
  });
  afterAll(async () => {
    await running?.close();
    await dropKeyspace(keyspace);
  });
  return {
    keyspace,
    running: () => running!,
    baseUrl: () => `http://127.0.0.1:${running!.gatewayPort}`,
    tokenFor: (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
  };
}
