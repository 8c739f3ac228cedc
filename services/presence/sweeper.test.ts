// The sweeper's leadership on the memory Coordinator (two "processes" sharing one coordination
// tree), on fake timers: one sweeps at a time, the other takes over when the holder's session
// ends or it closes, a new holder waits `holdMs`, and a failing store pushes the sweep back.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryCoordinationTree, MemoryCoordinator } from "../../platform/engines/memory/memory-coordinator.js";
import { DomainError } from "../../platform/errors.js";
import { SweepLeader } from "./sweeper.js";

const TICK = 100;
const HOLD = 1_000;

describe("SweepLeader", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const leader = (coordinator: MemoryCoordinator, sweeps: number[], store = { fail: false }) =>
    new SweepLeader({
      coordinator,
      path: "/switchboard/presence/sweeper",
      id: "p",
      tickMs: TICK,
      holdMs: HOLD,
      sweep: async () => {
        if (store.fail) throw new DomainError("Unavailable", "store down");
        sweeps.push(Date.now());
      },
      ping: async () => {
        if (store.fail) throw new DomainError("Unavailable", "store down");
      },
    }).start();

  it("one process sweeps at a time; the other takes over (after the hold) when the holder's session ends", async () => {
    const tree = new MemoryCoordinationTree();
    const ca = new MemoryCoordinator(tree);
    const cb = new MemoryCoordinator(tree);
    const a: number[] = [];
    const b: number[] = [];
    const la = leader(ca, a);
    await vi.advanceTimersByTimeAsync(TICK);
    const lb = leader(cb, b);
    const t0 = Date.now();
    await vi.advanceTimersByTimeAsync(3_000);
    expect(la.leading).toBe(true);
    expect(lb.leading).toBe(false);
    expect(b).toEqual([]);
    // a held for HOLD after taking the lead, then swept every tick.
    expect(a.length).toBeGreaterThanOrEqual(15);
    expect(a[0]! - (t0 - TICK)).toBeGreaterThanOrEqual(HOLD);

    ca.close(); // a's session ends (crash, expiry): its lock node is gone
    const handover = Date.now();
    const aBefore = a.length;
    await vi.advanceTimersByTimeAsync(3_000);
    expect(la.leading).toBe(false);
    expect(a.length).toBe(aBefore);
    expect(lb.leading).toBe(true);
    expect(b.length).toBeGreaterThan(10);
    expect(b[0]! - handover).toBeGreaterThanOrEqual(HOLD);
    expect(b[0]! - handover).toBeLessThanOrEqual(HOLD + 2 * TICK);
    await la.close();
    await lb.close();
  });

  it("closing releases the lock at once for the next process", async () => {
    const tree = new MemoryCoordinationTree();
    const a: number[] = [];
    const b: number[] = [];
    const la = leader(new MemoryCoordinator(tree), a);
    await vi.advanceTimersByTimeAsync(TICK);
    const lb = leader(new MemoryCoordinator(tree), b);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(la.leading).toBe(true);
    await la.close();
    await vi.advanceTimersByTimeAsync(TICK * 2);
    expect(lb.leading).toBe(true);
    await lb.close();
  });

  it("after the store failed, sweeping resumes only a hold after it answers again", async () => {
    const store = { fail: false };
    const sweeps: number[] = [];
    const l = leader(new MemoryCoordinator(), sweeps, store);
    await vi.advanceTimersByTimeAsync(HOLD + 5 * TICK);
    expect(sweeps.length).toBeGreaterThan(0);
    store.fail = true;
    await vi.advanceTimersByTimeAsync(5_000);
    const during = sweeps.length;
    store.fail = false;
    const back = Date.now();
    await vi.advanceTimersByTimeAsync(HOLD - 2 * TICK);
    expect(sweeps.length).toBe(during);
    await vi.advanceTimersByTimeAsync(4 * TICK);
    expect(sweeps.length).toBeGreaterThan(during);
    expect(sweeps[during]! - back).toBeGreaterThanOrEqual(HOLD - TICK);
    await l.close();
  });
});
