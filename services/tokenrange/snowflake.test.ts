import { describe, expect, it } from "vitest";
import { SNOWFLAKE_EPOCH_MS, SnowflakeGenerator, decodeSnowflake } from "./snowflake.js";
import type { WorkerClaim, WorkerIdSource } from "./worker-id.js";

const T0 = SNOWFLAKE_EPOCH_MS + 1_000_000_000;

describe("snowflake ids", () => {
  it("layout: 41-bit time | 10-bit worker | 12-bit sequence, positive int64, decodes", () => {
    const g = new SnowflakeGenerator({ worker: 1023, now: () => T0 });
    const id = g.next();
    expect(id > 0n && id < 2n ** 63n).toBe(true);
    expect(decodeSnowflake(id)).toEqual({ timeMs: T0, workerId: 1023, sequence: 0 });
    expect(decodeSnowflake(g.next()).sequence).toBe(1);
    expect(() => new SnowflakeGenerator({ worker: 1024 })).toThrow(/worker id/);
  });

  it("monotonic per worker, sequence overflow waits for the next ms, no duplicates", () => {
    let t = T0;
    let reads = 0;
    // Time moves 1 ms every 5,000 clock reads: forces sequence overflow (4,096 per ms).
    const g = new SnowflakeGenerator({ worker: 7, now: () => t + Math.floor(reads++ / 5000) });
    let prev = -1n;
    const seen = new Set<bigint>();
    for (let i = 0; i < 50_000; i++) {
      const id = g.next();
      expect(id > prev).toBe(true);
      prev = id;
      seen.add(id);
    }
    expect(seen.size).toBe(50_000);
    expect(decodeSnowflake(prev).timeMs).toBeGreaterThan(T0 + 10);
    t += 0;
  });

  it("unique across workers at the same time", () => {
    const gens = Array.from({ length: 16 }, (_, w) => new SnowflakeGenerator({ worker: w, now: () => T0 }));
    const all = new Set<bigint>();
    for (let i = 0; i < 4096; i++) for (const g of gens) all.add(g.next());
    expect(all.size).toBe(16 * 4096);
  });

  it("clock rollback: waits out a small step, refuses a large one until the clock catches up", () => {
    let t = T0;
    const script: number[] = [];
    const g = new SnowflakeGenerator({ worker: 1, now: () => (script.length ? script.shift()! : t), maxRollbackWaitMs: 5 });
    const a = g.next();
    // 3 ms back, then the clock advances back past the last time: waited out.
    script.push(T0 - 3, T0 - 2, T0 - 1, T0, T0 + 1);
    const b = g.next();
    expect(b > a).toBe(true);
    expect(decodeSnowflake(b).timeMs).toBeGreaterThanOrEqual(T0);
    script.length = 0;
    t = T0 - 1000;
    expect(() => g.next()).toThrow(expect.objectContaining({ kind: "FailedPrecondition" }));
    t = T0 + 2;
    const c = g.next();
    expect(c > b).toBe(true);
  });

  it("a stuck clock during a small wait errors instead of spinning forever", () => {
    let t = T0;
    const g = new SnowflakeGenerator({ worker: 1, now: () => t });
    g.next();
    t = T0 - 2;
    expect(() => g.next()).toThrow(expect.objectContaining({ kind: "FailedPrecondition" }));
  });

  it("respects the worker's notBefore mark and stops without a worker id", () => {
    let claim: WorkerClaim | undefined = { workerId: 3, notBeforeMs: T0 + 2, epoch: 1 };
    const src: WorkerIdSource = { current: () => claim };
    let t = T0;
    const g = new SnowflakeGenerator({ worker: src, now: () => t++ });
    const id = g.next();
    expect(decodeSnowflake(id).timeMs).toBeGreaterThan(T0 + 2);
    claim = undefined;
    expect(() => g.next()).toThrow(expect.objectContaining({ kind: "Unavailable" }));
    claim = { workerId: 4, notBeforeMs: T0 + 100_000, epoch: 2 };
    expect(() => g.next()).toThrow(expect.objectContaining({ kind: "FailedPrecondition" }));
  });
});
