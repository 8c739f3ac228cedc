import { afterAll, describe, expect, it } from "vitest";
import { infra } from "../../../testkit/keyspace.js";
import { freePort } from "../../../testkit/servers/index.js";
import { eventBusConformance } from "../../ports/event-bus.conformance.js";
import { NatsBus } from "./nats-bus.js";
import { TcpProxy } from "./testing/tcp-proxy.js";

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

  it("reports its connection state: down at start, up, down on a cut, up again (near-caches rely on it)", async () => {
    const proxy = new TcpProxy(await freePort(), { host: "127.0.0.1", port: infra().nats.port });
    const bus = new NatsBus({ servers: [`nats://127.0.0.1:${proxy.port}`] });
    buses.push(bus);
    const seen: boolean[] = [];
    const stop = bus.onConnectionChange((up) => seen.push(up));
    const until = async (want: boolean[]) => {
      for (let i = 0; i < 100 && seen.join() !== want.join(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(seen).toEqual(want);
    };
    try {
      expect(seen).toEqual([false]);
      await proxy.up();
      await until([false, true]);
      await proxy.down();
      await until([false, true, false]);
      await proxy.up();
      await until([false, true, false, true]);
    } finally {
      stop();
      await proxy.down();
    }
  }, 30_000);

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

  it("connects when the server appears later; subscriptions made while down and durable consumers survive a cut", async () => {
    const proxy = new TcpProxy(await freePort(), { host: "127.0.0.1", port: infra().nats.port });
    const bus = new NatsBus({ servers: [`nats://127.0.0.1:${proxy.port}`] });
    buses.push(bus);
    try {
      const ns = `late${Date.now()}`;
      const got: string[] = [];
      bus.subscribe(`${ns}.core`, (m) => void got.push(new TextDecoder().decode(m.data)));
      await new Promise((r) => setTimeout(r, 300));
      expect(bus.status().ok).toBe(false);
      await proxy.up();
      await bus.whenConnected();
      await new Promise((r) => setTimeout(r, 100));
      bus.publish(`${ns}.core`, new TextEncoder().encode("hello"));
      const t = Date.now() + 5_000;
      while (got.length === 0 && Date.now() < t) await new Promise((r) => setTimeout(r, 20));
      expect(got).toEqual(["hello"]);

      const stream = `LATE_${ns}`;
      await bus.ensureStream(stream, [`${ns}.d.>`]);
      const durable: string[] = [];
      const c = await bus.consume(stream, "w", (m) => {
        durable.push(new TextDecoder().decode(m.data));
        m.ack();
      });
      await bus.publishDurable(`${ns}.d.1`, new TextEncoder().encode("before"), "b1");
      const t1 = Date.now() + 5_000;
      while (durable.length < 1 && Date.now() < t1) await new Promise((r) => setTimeout(r, 20));

      await proxy.down();
      const t2 = Date.now() + 5_000;
      while (bus.status().ok && Date.now() < t2) await new Promise((r) => setTimeout(r, 20));
      await expect(bus.publishDurable(`${ns}.d.2`, new TextEncoder().encode("x"), "x")).rejects.toMatchObject({ kind: "Unavailable" });
      await proxy.up();
      const t3 = Date.now() + 10_000;
      while (!bus.status().ok && Date.now() < t3) await new Promise((r) => setTimeout(r, 50));
      await bus.publishDurable(`${ns}.d.3`, new TextEncoder().encode("after"), "a1");
      const t4 = Date.now() + 20_000;
      while (durable.length < 2 && Date.now() < t4) await new Promise((r) => setTimeout(r, 50));
      expect(durable).toEqual(["before", "after"]);
      await c.stop();
    } finally {
      await bus.close();
      await proxy.down();
    }
  });
});
