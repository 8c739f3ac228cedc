import { describe, expect, it } from "vitest";
import type { CqlSession } from "./cassandra/session.js";
import { openMemoryEngine, type Engine } from "./engine.js";
import { storeFactory } from "./engine-store.js";
import { silentLog } from "./engines/log.js";

const factory = () =>
  storeFactory<{ on: string; cql?: CqlSession }>(
    () => ({ on: "memory" }),
    (cql) => ({ on: "cql", cql }),
  );

describe("storeFactory", () => {
  it("refuses a cluster engine without a Cassandra session instead of handing out a memory store", () => {
    const memory = openMemoryEngine(silentLog);
    const broken: Engine = { ...memory, kind: "cluster" };
    expect(() => factory()(broken)).toThrow(/cluster engine has no Cassandra session/);
  });

  it("uses the CQL adapter whenever the engine has a session", () => {
    const cql = {} as CqlSession;
    const engine: Engine = { ...openMemoryEngine(silentLog), kind: "cluster", cql };
    expect(factory()(engine)).toEqual({ on: "cql", cql });
  });

  it("shares one memory store per memory engine", () => {
    const make = factory();
    const a = openMemoryEngine(silentLog);
    const b = openMemoryEngine(silentLog);
    expect(make(a)).toBe(make(a));
    expect(make(a)).not.toBe(make(b));
    expect(make(a)).toEqual({ on: "memory" });
  });
});
