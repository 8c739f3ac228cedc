import type { CqlSession } from "./cassandra/session.js";
import type { Engine } from "./engine.js";
import type { EngineLog } from "./engines/log.js";

/**
 * The factory every store port uses: on the memory engine one in-process store per engine (so
 * services sharing an engine in one process see the same data); on the cluster engine the CQL
 * adapter.
 */
export function storeFactory<S>(
  memory: () => S,
  cluster: (cql: CqlSession, log?: EngineLog) => S,
): (engine: Engine, log?: EngineLog) => S {
  const memoryStores = new WeakMap<Engine, S>();
  return (engine, log) => {
    if (engine.kind === "memory" || !engine.cql) {
      let s = memoryStores.get(engine);
      if (s === undefined) {
        s = memory();
        memoryStores.set(engine, s);
      }
      return s;
    }
    return cluster(engine.cql, log);
  };
}
