import type { Engine } from "../../platform/engine.js";
import { MemoryPresenceStore } from "./adapters/memory-presence-store.js";
import { RedisPresenceStore } from "./adapters/redis-presence-store.js";
import type { PresenceStore } from "./ports.js";

const memoryStores = new WeakMap<Engine, PresenceStore>();

/**
 * The PresenceStore of an engine: on Redis when the engine has a Redis connection, else one
 * in-process store per engine (everything in one process sees the same presence, and a presence
 * service restarted on the same engine finds its state again). A cluster engine without Redis is
 * a wiring mistake, refused: presence split across processes would be wrong everywhere.
 */
export function createPresenceStore(engine: Engine): PresenceStore {
  if (engine.redis) return new RedisPresenceStore(engine.redis);
  if (engine.kind !== "memory") throw new Error(`a ${engine.kind} engine has no Redis connection: the presence store cannot be opened`);
  let s = memoryStores.get(engine);
  if (!s) {
    s = new MemoryPresenceStore();
    memoryStores.set(engine, s);
  }
  return s;
}
