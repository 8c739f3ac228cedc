// Real-server harness: one module per server plus shared process helpers.
import { performance } from "node:perf_hooks";
import { startCassandra, type CassandraHandle } from "./cassandra.js";
import { startNats, type NatsHandle } from "./nats.js";
import { startRedis, type RedisHandle } from "./redis.js";
import { startZooKeeper, type ZooKeeperHandle } from "./zookeeper.js";
import type { ServerHandle } from "./process.js";
import { TEST_MESH_SECRET } from "../mesh-identity.js";

export { startCassandra, type CassandraHandle, type StartCassandraOptions } from "./cassandra.js";
export { startNats, type NatsHandle } from "./nats.js";
export { startRedis, type RedisHandle } from "./redis.js";
export { startZooKeeper, type ZooKeeperHandle } from "./zookeeper.js";
export {
  assertNoOrphans,
  listMarkedProcesses,
  freePort,
  pidAlive,
  MARKER,
  RUN_TAG,
  ServerStartError,
  type MarkedProcess,
  type ServerHandle,
} from "./process.js";
export { missingInfra, cassandraLibDir, cassandraVersion } from "./paths.js";

/** Serializable connection info for all four servers (what tests get from inject("infra")). */
export interface InfraInfo {
  zookeeper: { connectString: string; host: string; port: number; version: string };
  nats: { url: string; host: string; port: number; monitorPort: number; version: string };
  redis: { url: string; host: string; port: number; version: string };
  cassandra: { contactPoint: string; host: string; port: number; localDataCenter: string; version: string };
}

export interface Infra {
  info: InfraInfo;
  zookeeper: ZooKeeperHandle;
  nats: NatsHandle;
  redis: RedisHandle;
  cassandra: CassandraHandle;
  /** Stops all four (in parallel); never throws for one server failing to stop before trying the rest. */
  stop(): Promise<void>;
}

function describe(h: ServerHandle & { host: string; port: number }): string {
  return `[infra] ${h.name} ${h.version} on ${h.host}:${h.port} ready in ${(h.startMs / 1000).toFixed(1)}s`;
}

/**
 * Starts ZooKeeper, NATS, Redis and Cassandra in parallel, each on fresh free loopback ports.
 * If any fails, the others are stopped and the first error is thrown.
 */
export async function startInfra(opts: { log?: (line: string) => void } = {}): Promise<Infra> {
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  const started: ServerHandle[] = [];
  const track = <T extends ServerHandle & { host: string; port: number }>(p: Promise<T>): Promise<T> =>
    p.then((h) => {
      started.push(h);
      log(describe(h));
      return h;
    });
  const results = await Promise.allSettled([
    track(startZooKeeper()),
    track(startNats()),
    track(startRedis()),
    track(startCassandra()),
  ] as const);
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    await Promise.allSettled(started.map((h) => h.stop()));
    throw failed[0]!.reason;
  }
  const [zk, nats, redis, cass] = results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    ZooKeeperHandle,
    NatsHandle,
    RedisHandle,
    CassandraHandle,
  ];
  log(`[infra] all servers ready in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  const info: InfraInfo = {
    zookeeper: { connectString: zk.connectString, host: zk.host, port: zk.port, version: zk.version },
    nats: { url: nats.url, host: nats.host, port: nats.port, monitorPort: nats.monitorPort, version: nats.version },
    redis: { url: redis.url, host: redis.host, port: redis.port, version: redis.version },
    cassandra: {
      contactPoint: cass.contactPoint,
      host: cass.host,
      port: cass.port,
      localDataCenter: cass.localDataCenter,
      version: cass.version,
    },
  };
  return {
    info,
    zookeeper: zk,
    nats,
    redis,
    cassandra: cass,
    async stop() {
      const r = await Promise.allSettled([zk.stop(), nats.stop(), redis.stop(), cass.stop()]);
      const bad = r.find((x): x is PromiseRejectedResult => x.status === "rejected");
      if (bad) throw bad.reason;
    },
  };
}

/** The env vars that point the mesh (SWITCHBOARD_ENGINE=cluster) at these servers. */
export function infraEnv(info: InfraInfo): Record<string, string> {
  return {
    SWITCHBOARD_ENGINE: "cluster",
    SWITCHBOARD_CASSANDRA_CONTACT_POINTS: info.cassandra.contactPoint,
    SWITCHBOARD_ZOOKEEPER_CONNECT: info.zookeeper.connectString,
    SWITCHBOARD_NATS_URL: info.nats.url,
    SWITCHBOARD_REDIS_URL: info.redis.url,
    // Test-only secrets: the cluster engine refuses to start without them.
    SWITCHBOARD_CODE_KEY: "switchboard-test-code-key-0123",
    SWITCHBOARD_JWT_HS256_SECRET: "switchboard-test-jwt-secret-0123456789abcdef",
    SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
  };
}
