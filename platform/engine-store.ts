import type { CqlSession } from "./cassandra/session.js";
import type { Engine } from "./engine.js";
import type { EngineLog } from "./engines/log.js";

/**
 * The factory every store port uses: the CQL adapter on an engine with a Cassandra session;
 * on the memory engine one in-process store per engine (so services sharing an engine in one
 * process see the same data). A cluster engine without a session is a wiring mistake, refused
 * here: quietly keeping data in one process's memory would lose it and split it across processes.
 */
export function storeFactory<S>(
  memory: () => S,
  cluster: (cql: CqlSession, log?: EngineLog) => S,
): (engine: Engine, log?: EngineLog) => S {
  const memoryStores = new WeakMap<Engine, S>();
  return (engine, log) => {
    if (engine.cql) return cluster(engine.cql, log);
    if (engine.kind !== "memory") {
      throw new Error(`a ${engine.kind} engine has no Cassandra session: its stores cannot be opened (the engine must be built by openEngine)`);
    }
    let s = memoryStores.get(engine);
    if (s === undefined) {
      s = memory();
      memoryStores.set(engine, s);
    }
    return s;
  };
}
