// Restarting Redis under a running presence service (cluster engine, a Redis of its own with an
// append-only file, the run's ZooKeeper, NATS and Cassandra): Redis is down for twice the timeout
// and comes back with its data, so every deadline in it has lapsed. Users who keep heartbeating get
// no transition at all (the sweeper holds while the store fails and one interval after it
// answers); the one who left meanwhile goes offline once; everyone is right within about one
// interval of the connection to Redis being back.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import cassandra from "cassandra-driver";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { PresenceChangedSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import { PresenceService, PresenceState } from "../../gen/switchboard/presence/v1/presence_pb.js";
import { loadConfig } from "../../platform/config.js";
import { openClusterEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { createGrpcClient } from "../../platform/grpc/client.js";
import type { RunningGrpcServer } from "../../platform/grpc/server.js";
import { cassandraClientOptions, infra, uniqueKeyspaceName } from "../../testkit/keyspace.js";
import { assertionHeaders, TEST_MESH_SECRET } from "../../testkit/mesh-identity.js";
import { waitFor } from "../../testkit/processes.js";
import { freePort, infraEnv } from "../../testkit/servers/index.js";
import { makeRunDir, spawnSupervised, tcpExchange, type SupervisedProcess } from "../../testkit/servers/process.js";
import { noUpstreams } from "../module.js";
import { serveService } from "../serve.js";
import { PRESENCE_CHANGED_SUBJECT } from "./fanout.js";
import { presenceModule } from "./module.js";
import { RESTART_ENV } from "./restart.suite.js";

const INTERVAL = 500;
const TIMEOUT = 1_500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** redis-server on a given port, its data (append-only file) in `dataDir`: a restart keeps it. */
async function redisOnPort(port: number, dataDir: string): Promise<SupervisedProcess> {
  const dir = makeRunDir("presence-redis-restart");
  const proc = await spawnSupervised({
    name: "redis",
    dir,
    command: "redis-server",
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dataDir, "--set-proc-title", "no"],
    graceSeconds: 3,
  });
  await waitFor(`redis on ${port}`, async () => ((await tcpExchange(port, "PING\r\n", { until: (r) => r.includes("\r\n") }).catch(() => "")).startsWith("+PONG") ? true : undefined), 15_000);
  return proc;
}

describe("presence across a Redis restart (cluster engine)", () => {
  it("no false offline transition; online again within an interval of Redis being back", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "switchboard-it-presence-redis-data-"));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const port = await freePort();
    let redis = await redisOnPort(port, dataDir);
    cleanups.push(() => redis.stop());
    const keyspace = uniqueKeyspaceName("presredis");
    const config = loadConfig({ ...infraEnv(infra()), ...RESTART_ENV, SWITCHBOARD_REDIS_URL: `redis://127.0.0.1:${port}`, SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET, SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace });
    cleanups.push(async () => {
      const admin = new cassandra.Client(cassandraClientOptions());
      await admin.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).finally(() => admin.shutdown());
    });
    const engine: Engine = openClusterEngine(config, silentLog);
    cleanups.push(() => engine.close());
    await waitFor("every backend", async () => ((await engine.readiness()).ready ? true : undefined), 60_000);
    const run = Date.now().toString(36);
    const users = Array.from({ length: 20 }, (_, i) => `r${i}-${run}`);
    const seen: { userId: string; state: PresenceState; at: number }[] = [];
    engine.bus.subscribe(PRESENCE_CHANGED_SUBJECT, (m) => {
      const ev = fromBinary(PresenceChangedSchema, m.data);
      if (ev.userId.endsWith(run)) seen.push({ userId: ev.userId, state: ev.state, at: Date.now() });
    });
    const server: RunningGrpcServer = await serveService(presenceModule, { config, log: pino({ level: "silent" }), engine, upstreamAddress: noUpstreams }, { host: "127.0.0.1", port: 0 });
    cleanups.push(() => server.shutdown(0));
    const client = createGrpcClient(PresenceService, `127.0.0.1:${server.port}`, { defaultTimeoutMs: 1_000 });
    cleanups.push(async () => client.close());
    let beating = true;
    const loops = users.map(async (u) => {
      while (beating) {
        await client.heartbeat({ deviceId: "d" }, { headers: assertionHeaders(u, PresenceService.method.heartbeat) }).catch(() => undefined);
        await sleep(INTERVAL);
      }
    });
    cleanups.push(async () => {
      beating = false;
      await Promise.all(loops);
    });
    await waitFor("everyone online", async () => (seen.filter((s) => s.state === PresenceState.ONLINE).length === users.length ? true : undefined), 30_000);
    await sleep(1_000);
    // The leaver's one heartbeat lapses while Redis is down.
    const LEAVER = `leaver-${run}`;
    await client.heartbeat({ deviceId: "d" }, { headers: assertionHeaders(LEAVER, PresenceService.method.heartbeat) });
    await waitFor("the leaver online", async () => (seen.some((s) => s.userId === LEAVER) ? true : undefined), 10_000);

    let readyAt = 0;
    await redis.stop();
    const downAt = Date.now();
    await waitFor("the engine to see Redis gone", async () => (engine.redis?.status !== "ready" ? true : undefined), 10_000);
    engine.redis!.once("ready", () => (readyAt = Date.now()));
    await sleep(2 * TIMEOUT);
    redis = await redisOnPort(port, dataDir);
    // The client reconnects with its own backoff (up to 2 s): presence's clock starts when it is back.
    await waitFor("the engine's Redis connection back", async () => (readyAt > 0 ? true : undefined), 15_000);
    const stateOf = async (u: string) =>
      PresenceState[(await client.getPresence({ userIds: [u] }, { headers: assertionHeaders(u, PresenceService.method.getPresence) })).presences[0]!.state];
    await waitFor("everyone online again", async () => ((await Promise.all(users.map(stateOf))).every((s) => s === "ONLINE") ? true : undefined), 10_000);
    expect(Date.now() - readyAt).toBeLessThanOrEqual(INTERVAL + 1_000);
    await sleep(2 * TIMEOUT);
    const after = seen.filter((s) => s.at >= downAt);
    expect(after.map((s) => `${s.userId} ${PresenceState[s.state]}`)).toEqual([`${LEAVER} OFFLINE`]);
    expect(after[0]!.at - readyAt).toBeLessThanOrEqual(INTERVAL + 1_000);
    expect((await Promise.all(users.map(stateOf))).every((s) => s === "ONLINE")).toBe(true);
    expect(await stateOf(LEAVER)).toBe("OFFLINE");
  }, 120_000);
});
