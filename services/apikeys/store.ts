import { storeFactory } from "../../platform/engine-store.js";
import { CassandraApiKeyStore } from "./adapters/cassandra-api-key-store.js";
import { MemoryApiKeyStore } from "./adapters/memory-api-key-store.js";
import type { ApiKeyStore } from "./ports.js";

/** The ApiKeyStore for an engine (Cassandra `api_keys`, or one in-process store per engine). */
export const createApiKeyStore = storeFactory<ApiKeyStore>(
  () => new MemoryApiKeyStore(),
  (cql, log) => new CassandraApiKeyStore(cql, log),
);
