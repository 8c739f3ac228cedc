import { storeFactory } from "../../platform/engine-store.js";
import { CassandraClickStatsStore } from "./adapters/cassandra-click-stats.js";
import { MemoryClickStatsStore } from "./adapters/memory-click-stats.js";
import type { ClickStatsStore } from "./ports.js";

/** The ClickStatsStore for an engine: the analytics consumer and the shortener's stats share it. */
export const createClickStatsStore = storeFactory<ClickStatsStore>(
  () => new MemoryClickStatsStore(),
  (cql, log) => new CassandraClickStatsStore(cql, log),
);
