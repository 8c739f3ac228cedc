import { eventBusConformance } from "../../ports/event-bus.conformance.js";
import { subjectMatches } from "../../ports/event-bus.js";
import { describe, expect, it } from "vitest";
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
