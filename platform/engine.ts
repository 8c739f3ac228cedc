import type { Redis } from "ioredis";
import type { Config } from "./config.js";
import type { CqlSession } from "./cassandra/session.js";
import { CassandraConnector } from "./engines/cluster/cassandra.js";
import { NatsBus } from "./engines/cluster/nats-bus.js";
import { RedisCache } from "./engines/cluster/redis-cache.js";
import { ZooKeeperCoordinator } from "./engines/cluster/zookeeper-coordinator.js";
import type { EngineLog } from "./engines/log.js";
import { systemClock, type Clock } from "./engines/memory/clock.js";
import { MemoryCache } from "./engines/memory/memory-cache.js";
import { MemoryBus } from "./engines/memory/memory-bus.js";
import { MemoryCoordinationTree, MemoryCoordinator } from "./engines/memory/memory-coordinator.js";
import type { Cache } from "./ports/cache.js";
import type { Coordinator } from "./ports/coordinator.js";
import type { EventBus } from "./ports/event-bus.js";

export type { EngineLog } from "./engines/log.js";

export interface ReadinessCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface Readiness {
  readonly ready: boolean;
  readonly checks: readonly ReadinessCheck[];
}

/** The backends a cluster engine reports on, by the names of its readiness checks. */
export const BACKENDS = ["cassandra", "zookeeper", "nats", "redis"] as const;
export type Backend = (typeof BACKENDS)[number];

export function isBackend(name: string): name is Backend {
  return (BACKENDS as readonly string[]).includes(name);
}

/**
 * The failing checks that matter to a user of `needs`: the named backends it depends on, and
 * any check that is not one backend (the memory engine's single check stands for all of them).
 */
export function unmetNeeds(readiness: Readiness, needs: readonly Backend[]): ReadinessCheck[] {
  return readiness.checks.filter((c) => !c.ok && (!isBackend(c.name) || needs.includes(c.name)));
}

/**
 * The backends a process runs on. Memory: everything in this process. Cluster: Cassandra/ScyllaDB
 * (`cql`), ZooKeeper, NATS + JetStream, Redis; every client connects in the background, so
 * openEngine returns even when all of them are down and `readiness()` says which are not up yet.
 */
export interface Engine {
  readonly kind: "memory" | "cluster";
  readonly cache: Cache;
  readonly bus: EventBus;
  readonly coordinator: Coordinator;
  /** Present in cluster mode only; memory adapters keep their own state. */
  readonly cql?: CqlSession;
  /**
   * The engine's Redis connection (the cache's), for stores that need more than the Cache port
   * (scripts, sorted sets). Present in cluster mode only; fails fast while Redis is down.
   */
  readonly redis?: Redis;
  readiness(): Promise<Readiness>;
  /** Closes every client; idempotent. */
  close(): Promise<void>;
}

export interface OpenEngineOptions {
  /** Memory engine clock (tests). */
  readonly clock?: Clock;
}

export async function openEngine(
  config: Pick<Config, "engine" | "cassandra" | "zookeeper" | "nats" | "redis">,
  log: EngineLog,
  options: OpenEngineOptions = {},
): Promise<Engine> {
  return config.engine === "memory" ? openMemoryEngine(log, options.clock) : openClusterEngine(config, log);
}

export function openMemoryEngine(log: EngineLog, clock: Clock = systemClock): Engine {
  const elog = log.child({ engine: "memory" });
  const cache = new MemoryCache(clock);
  const bus = new MemoryBus(elog, clock);
  const coordinator = new MemoryCoordinator(new MemoryCoordinationTree());
  let closed = false;
  return {
    kind: "memory",
    cache,
    bus,
    coordinator,
    readiness: async () => ({
      ready: !closed,
      checks: [{ name: "memory", ok: !closed, detail: closed ? "closed" : "in-process engine" }],
    }),
    close: async () => {
      if (closed) return;
      closed = true;
      bus.close();
      coordinator.close();
    },
  };
}

export function openClusterEngine(
  config: Pick<Config, "cassandra" | "zookeeper" | "nats" | "redis">,
  log: EngineLog,
): Engine {
  const elog = log.child({ engine: "cluster" });
  const c = config.cassandra;
  const cql = new CassandraConnector({
    contactPoints: c.contactPoints,
    localDataCenter: c.localDataCenter,
    keyspace: c.keyspace,
    replicationFactor: c.replicationFactor,
    flavor: c.flavor,
    log: elog,
  });
  const coordinator = new ZooKeeperCoordinator({
    connectString: config.zookeeper.connectString,
    sessionTimeoutMs: config.zookeeper.sessionTimeoutMs,
    log: elog,
  });
  const bus = new NatsBus({ servers: config.nats.servers, log: elog });
  const cache = new RedisCache({ url: config.redis.url, log: elog });
  let closed = false;
  return {
    kind: "cluster",
    cache,
    bus,
    coordinator,
    cql,
    redis: cache.client,
    readiness: async () => {
      const checks: ReadinessCheck[] = [
        { name: "cassandra", ...cql.status() },
        { name: "zookeeper", ...coordinator.status() },
        { name: "nats", ...bus.status() },
        { name: "redis", ...cache.status() },
      ];
      if (closed) return { ready: false, checks: checks.map((ch) => ({ ...ch, ok: false, detail: "engine closed" })) };
      return { ready: checks.every((ch) => ch.ok), checks };
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await Promise.allSettled([cql.close(), coordinator.close(), bus.close(), cache.close()]);
    },
  };
}
