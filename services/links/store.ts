import type { Engine } from "../../platform/engine.js";
import { storeFactory } from "../../platform/engine-store.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { CassandraLinkStore } from "./adapters/cassandra-link-store.js";
import { MemoryLinkStore } from "./adapters/memory-link-store.js";
import type { LinkStore } from "./ports.js";

const linkStoreFor = storeFactory<LinkStore>(
  () => new MemoryLinkStore(),
  (cql, log) => new CassandraLinkStore(cql, log),
);

/**
 * The LinkStore for an engine: shortener and redirect in one process share the memory store;
 * on Cassandra the schema is migrated on first use, so this never fails while Cassandra is down.
 */
export async function createLinkStore(engine: Engine, log?: EngineLog): Promise<LinkStore> {
  return linkStoreFor(engine, log);
}
