import type { Engine } from "../../platform/engine.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { CassandraApiKeyStore } from "./adapters/cassandra-api-key-store.js";
import { MemoryApiKeyStore } from "./adapters/memory-api-key-store.js";
import type { ApiKeyStore } from "./ports.js";

const memoryStores = new WeakMap<Engine, MemoryApiKeyStore>();

/** The ApiKeyStore for an engine: memory -> one in-process store per engine; cluster -> Cassandra. */
export function createApiKeyStore(engine: Engine, log?: EngineLog): ApiKeyStore {
  if (engine.kind === "memory" || !engine.cql) {
    let s = memoryStores.get(engine);
    if (!s) {
      s = new MemoryApiKeyStore();
      memoryStores.set(engine, s);
    }
    return s;
  }
  return new CassandraApiKeyStore(engine.cql, log);
}
