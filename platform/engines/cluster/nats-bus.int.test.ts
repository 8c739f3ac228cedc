import { afterAll, describe, expect, it } from "vitest";
import { infra } from "../../../testkit/keyspace.js";
import { freePort } from "../../../testkit/servers/index.js";
import { eventBusConformance } from "../../ports/event-bus.conformance.js";
import { NatsBus } from "./nats-bus.js";

describe("NatsBus against the run's real NATS", () => {
  it("talks to a real nats-server with JetStream", async () => {
    const bus = new NatsBus({ servers: [infra().nats.url] });
    try {
      await bus.whenConnected();
      console.log(`nats-bus.int: nats-server ${bus.serverVersion()} at ${infra().nats.url}`);
      expect(bus.serverVersion()).toBe(infra().nats.version);
      expect(bus.status().ok).toBe(true);
    } finally {
      await bus.close();
    }
  });

  eventBusConformance(async () => {
    const bus = new NatsBus({ servers: [infra().nats.url] });
    await bus.whenConnected();
    return { bus, cleanup: () => bus.close() };
  });
});

describe("NatsBus failure behaviour", () => {
  const buses: NatsBus[] = [];
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });

  it("constructing against a dead port does not throw; durable calls fail fast with Unavailable", async () => {
    const bus = new NatsBus({ servers: [`nats://127.0.0.1:${await freePort()}`] });
    buses.push(bus);
    await new Promise((r) => setTimeout(r, 200));
    expect(bus.status().ok).toBe(false);
    expect(bus.status().detail).toMatch(/not connected/);
    const t0 = Date.now();
    await expect(bus.publishDurable("a.b", new Uint8Array([1]), "id")).rejects.toMatchObject({ kind: "Unavailable" });
    await expect(bus.ensureStream("S", ["a.>"])).rejects.toMatchObject({ kind: "Unavailable" });
    expect(() => bus.publish("a.b", new Uint8Array([1]))).toThrow(/unavailable/);
    expect(Date.now() - t0).toBeLessThan(200);
    // A subscription made while down is accepted (attached once connected).
    const off = bus.subscribe("a.>", () => {});
    off();
  });
});
