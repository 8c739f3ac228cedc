import type { Engine } from "../../platform/engine.js";
import { storeFactory } from "../../platform/engine-store.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { CassandraDeviceStore } from "./adapters/cassandra-device-store.js";
import { MemoryDeviceStore } from "./adapters/memory-device-store.js";
import type { DeviceStore } from "./ports.js";

const storeFor = storeFactory<DeviceStore>(
  () => new MemoryDeviceStore(),
  (cql, log) => new CassandraDeviceStore(cql, log),
);

/**
 * The DeviceStore of an engine: one memory store per engine (the push service and the worker in
 * one process see the same devices); on Cassandra the schema is migrated on first use, so this
 * never fails while Cassandra is down.
 */
export function createDeviceStore(engine: Engine, log?: EngineLog): DeviceStore {
  return storeFor(engine, log);
}
