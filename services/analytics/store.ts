import type { Engine } from "../../platform/engine.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { CassandraClickStatsStore } from "./adapters/cassandra-click-stats.js";
import { MemoryClickStatsStore } from "./adapters/memory-click-stats.js";
import type { ClickStatsStore } from "./ports.js";

// One memory store per engine, so the analytics consumer and the shortener's stats share it.
const memoryStores = new WeakMap<Engine, MemoryClickStatsStore>();

/** The ClickStatsStore for an engine: memory -> shared in-process store; cluster -> Cassandra counters. */
export function createClickStatsStore(engine: Engine, log?: EngineLog): ClickStatsStore {
  if (engine.kind === "memory" || !engine.cql) {
    let s = memoryStores.get(engine);
    if (!s) {
      s = new MemoryClickStatsStore();
      memoryStores.set(engine, s);
    }
    return s;
  }
  return new CassandraClickStatsStore(engine.cql, log);
}
