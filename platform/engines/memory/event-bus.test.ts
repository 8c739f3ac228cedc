import { eventBusConformance } from "../../ports/event-bus.conformance.js";
import { subjectMatches } from "../../ports/event-bus.js";
import { describe, expect, it } from "vitest";
import { silentLog } from "../log.js";
import { MemoryBus } from "./memory-bus.js";

eventBusConformance(async () => {
  const bus = new MemoryBus();
  return { bus, cleanup: async () => bus.close() };
});

describe("subjectMatches", () => {
  it("follows NATS wildcard rules", () => {
    expect(subjectMatches("a.b", "a.b")).toBe(true);
    expect(subjectMatches("a.*", "a.b")).toBe(true);
    expect(subjectMatches("a.*", "a.b.c")).toBe(false);
    expect(subjectMatches("a.>", "a.b.c")).toBe(true);
    expect(subjectMatches("a.>", "a")).toBe(false);
    expect(subjectMatches("*.b", "a.b")).toBe(true);
    expect(subjectMatches("a.b", "a.b.c")).toBe(false);
  });
});

describe("MemoryBus stream limits", () => {
  it("keeps at most maxStreamBytes of payload per stream, dropping the oldest messages", async () => {
    const warnings: unknown[] = [];
    const log = { ...silentLog, warn: (o: unknown) => warnings.push(o) };
    const bus = new MemoryBus(log, undefined, 1_000);
    try {
      await bus.ensureStream("LIMITED", ["lim.>"]);
      for (let i = 0; i < 25; i++) await bus.publishDurable("lim.x", new Uint8Array(100).fill(i), `m${i}`);
      const seen: number[] = [];
      const c = await bus.consume("LIMITED", "reader", (m) => {
        seen.push(m.data[0]!);
        m.ack();
      });
      for (let i = 0; i < 100 && seen.length < 10; i++) await new Promise((r) => setTimeout(r, 5));
      await c.stop();
      // 10 x 100 bytes fit; the 15 oldest were dropped before anyone consumed them.
      expect(seen).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
      // Dropped before a durable existed: nobody to warn about.
      expect(warnings).toEqual([]);
      await bus.publishDurable("lim.x", new Uint8Array(100), "late-1");
      const c2 = await bus.consume("LIMITED", "slow", () => undefined);
      for (let i = 0; i < 11; i++) await bus.publishDurable("lim.x", new Uint8Array(100), `late-2-${i}`);
      await c2.stop();
      expect(warnings.length).toBeGreaterThan(0);
    } finally {
      bus.close();
    }
  });
});
