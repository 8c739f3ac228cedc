import type { Engine } from "../../platform/engine.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { CassandraLinkStore } from "./adapters/cassandra-link-store.js";
import { MemoryLinkStore } from "./adapters/memory-link-store.js";
import type { LinkStore } from "./ports.js";

// One memory store per engine, so shortener and redirect in one process see the same links.
const memoryStores = new WeakMap<Engine, MemoryLinkStore>();

/**
 * The LinkStore for an engine: memory -> shared in-process store; cluster -> Cassandra (schema
 * migrated on first use, so this never fails because Cassandra is still down).
 */
export async function createLinkStore(engine: Engine, log?: EngineLog): Promise<LinkStore> {
  if (engine.kind === "memory" || !engine.cql) {
    let s = memoryStores.get(engine);
    if (!s) {
      s = new MemoryLinkStore();
      memoryStores.set(engine, s);
    }
    return s;
  }
  return new CassandraLinkStore(engine.cql, log);
}
