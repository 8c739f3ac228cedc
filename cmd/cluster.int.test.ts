// The cluster run as deployed: every service and the gateway in its own process, configured
// only by environment, on real Cassandra, ZooKeeper, NATS and Redis.
import cassandra from "cassandra-driver";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, SERVICE_NAMES, upstreamVariable } from "../platform/config.js";
import { openEngine, type Engine } from "../platform/engine.js";
import { createLinkStore } from "../services/links/store.js";
import { cassandraClientOptions, infra, uniqueKeyspaceName } from "../testkit/keyspace.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../testkit/processes.js";
import { infraEnv } from "../testkit/servers/index.js";

const keyspace = uniqueKeyspaceName("cluster_run");
const procs: MeshProcess[] = [];
let gatewayUrl: string;
let engine: Engine | undefined;

beforeAll(async () => {
  const env: Record<string, string> = {
    ...infraEnv(infra()),
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_JWT_HS256_SECRET: "cluster-test-secret-0123456789abcdef0123456789",
  };
  for (const name of SERVICE_NAMES) env[upstreamVariable(name)] = `127.0.0.1:${await freePort()}`;
  for (const name of SERVICE_NAMES) {
    procs.push(spawnSwitchboard([name], { ...env, SWITCHBOARD_GRPC_PORT: env[upstreamVariable(name)]!.split(":")[1]! }));
  }
  const gatewayPort = await freePort();
  procs.push(spawnSwitchboard(["gateway"], { ...env, SWITCHBOARD_GATEWAY_PORT: String(gatewayPort) }));
  gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  engine = await openEngine(loadConfig(env), pino({ level: "silent" }));
}, 120_000);

afterAll(async () => {
  const codes = await Promise.all(procs.map((p) => p.stop()));
  await engine?.close();
  const admin = new cassandra.Client(cassandraClientOptions());
  try {
    await admin.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
  } finally {
    await admin.shutdown();
  }
  // Every process drained and exited by itself on SIGTERM.
  expect(codes).toEqual(procs.map(() => 0));
});

describe("cluster run: one process per service", () => {
  it("becomes ready once every service reports its backends up", async () => {
    const report = await waitFor(
      "gateway /readyz",
      async () => {
        const res = await fetch(`${gatewayUrl}/readyz`);
        return res.status === 200 ? ((await res.json()) as { checks: { name: string; ok: boolean }[] }) : undefined;
      },
      90_000,
    );
    expect(report.checks.filter((c) => c.ok).map((c) => c.name).sort()).toEqual([...SERVICE_NAMES].sort());
  }, 100_000);

  it("resolves a link stored in Cassandra through gateway -> redirect process", async () => {
    const store = await createLinkStore(engine!);
    await store.insertIfAbsent({
      code: "clst001",
      longUrl: "https://example.org/cluster",
      ownerId: "u1",
      createdAt: new Date(),
      redirectType: 302,
    });
    const res = await fetch(`${gatewayUrl}/switchboard.redirect.v1.RedirectService/Resolve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ code: "clst001" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      code: "clst001",
      longUrl: "https://example.org/cluster",
      redirectType: "REDIRECT_TYPE_TEMPORARY",
    });
  });
});
