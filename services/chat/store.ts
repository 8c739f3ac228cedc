import type { Engine } from "../../platform/engine.js";
import { storeFactory } from "../../platform/engine-store.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { CassandraChatStore } from "./adapters/cassandra-chat-store.js";
import { MemoryChatStore } from "./adapters/memory-chat-store.js";
import type { ChatStore } from "./ports.js";

export interface ChatStoreOptions {
  /** Message TTL in days (config.chat.retentionDays); 0 keeps messages forever. */
  readonly retentionDays?: number;
  /** Client timeout of each database write (config.chat.writeTimeoutMs). */
  readonly writeTimeoutMs?: number;
}

/** Per engine: a builder of its store (the memory store itself is shared per engine). */
const storeFor = storeFactory<(options: ChatStoreOptions) => ChatStore>(
  () => {
    const shared = new MemoryChatStore();
    return () => shared;
  },
  (cql, log) => (options) => new CassandraChatStore(cql, { ...options, ...(log ? { log } : {}) }),
);

/**
 * The ChatStore for an engine: one memory store per engine (everything in one process sees the
 * same chat); on Cassandra the schema is migrated on first use, so this never fails while
 * Cassandra is down.
 */
export async function createChatStore(engine: Engine, log?: EngineLog, options: ChatStoreOptions = {}): Promise<ChatStore> {
  return storeFor(engine, log)(options);
}
