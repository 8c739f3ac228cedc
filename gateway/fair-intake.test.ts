import { describe, expect, it } from "vitest";
import { createFairIntake, type IntakeLane, type LaneHooks } from "./fair-intake.js";

const nextTurn = () => new Promise((r) => setImmediate(r));

/** A lane that records what happens to it under `name`. */
function recordingLane(intake: ReturnType<typeof createFairIntake>, key: string, name: string, log: string[]): IntakeLane {
  const hooks: LaneHooks = {
    deliver: (chunk) => log.push(`${name}:${chunk.toString()}`),
    hold: () => log.push(`${name} held`),
    release: () => log.push(`${name} released`),
    onEnd: () => log.push(`${name} ended`),
  };
  return intake.lane(key, hooks);
}

describe("fair intake of HTTP/2 bytes", () => {
  it("passes reads straight through under the turn's budget", () => {
    const log: string[] = [];
    const a = recordingLane(createFairIntake(10), "a", "a", log);
    a.offer(Buffer.from("abc"));
    a.offer(Buffer.from("def"));
    expect(log).toEqual(["a:abc", "a:def"]);
    expect(a.pending).toBe(0);
  });

  it("holds reads beyond the budget for later turns, round-robin by address, never splitting a read", async () => {
    const log: string[] = [];
    const intake = createFairIntake(4);
    const a1 = recordingLane(intake, "a", "a1", log);
    const a2 = recordingLane(intake, "a", "a2", log);
    const b = recordingLane(intake, "b", "b", log);
    // One read larger than the budget goes through whole; everything after it waits.
    a1.offer(Buffer.from("111111"));
    a1.offer(Buffer.from("1111"));
    a2.offer(Buffer.from("2222"));
    a2.offer(Buffer.from("2222"));
    b.offer(Buffer.from("bbbb"));
    expect(log).toEqual(["a1:111111", "a1 held", "a2 held", "b held"]);
    expect(a1.pending + a2.pending + b.pending).toBe(16);
    log.length = 0;
    await nextTurn();
    // The newcomer from b waits for one turn, not behind both of a's connections.
    expect(log).toEqual(["a1:1111", "a1 released"]);
    log.length = 0;
    await nextTurn();
    expect(log).toEqual(["b:bbbb", "b released"]);
    log.length = 0;
    await nextTurn();
    expect(log).toEqual(["a2:2222"]);
    log.length = 0;
    await nextTurn();
    expect(log).toEqual(["a2:2222", "a2 released"]);
    expect(a2.pending).toBe(0);
    // A read while nothing waits and the turn is fresh goes straight through again.
    log.length = 0;
    await nextTurn();
    b.offer(Buffer.from("bb"));
    expect(log).toEqual(["b:bb"]);
  });

  it("ends a lane after its queued reads, and drops the queue of a closed one", async () => {
    const log: string[] = [];
    const intake = createFairIntake(2);
    const a = recordingLane(intake, "a", "a", log);
    const b = recordingLane(intake, "b", "b", log);
    a.offer(Buffer.from("aa"));
    a.offer(Buffer.from("AA"));
    a.end();
    b.offer(Buffer.from("bb"));
    b.close();
    expect(log).toEqual(["a:aa", "a held", "b held"]);
    await nextTurn();
    await nextTurn();
    expect(log).toEqual(["a:aa", "a held", "b held", "a:AA", "a ended"]);
    expect(b.pending).toBe(0);
    b.offer(Buffer.from("late"));
    expect(log).not.toContain("b:late");
  });
});
