import { afterAll, describe, expect, it } from "vitest";
import { infra } from "../../../testkit/keyspace.js";
import { freePort, startZooKeeper } from "../../../testkit/servers/index.js";
import { tcpExchange } from "../../../testkit/servers/process.js";
import { coordinatorConformance } from "../../ports/coordinator.conformance.js";
import type { Coordinator } from "../../ports/coordinator.js";
import { TcpProxy } from "./testing/tcp-proxy.js";
import { ZooKeeperCoordinator } from "./zookeeper-coordinator.js";

const open = async (connectString: string, sessionTimeoutMs = 4_000) => {
  const c = new ZooKeeperCoordinator({ connectString, sessionTimeoutMs });
  await c.whenConnected(20_000);
  return c;
};

describe("ZooKeeperCoordinator against the run's real ZooKeeper", () => {
  it("talks to a real ZooKeeper", async () => {
    const srvr = await tcpExchange(infra().zookeeper.port, "srvr", { until: (r) => r.includes("Mode:") });
    expect(srvr).toMatch(/Zookeeper version: 3\./);
    console.log(`zookeeper-coordinator.int: ${infra().zookeeper.version} at ${infra().zookeeper.connectString}`);
    const c = await open(infra().zookeeper.connectString);
    try {
      expect(c.sessionState).toBe("connected");
      expect(c.status().detail).toMatch(/^session 0x/);
      expect(infra().zookeeper.version).toMatch(/3\.\d+/);
    } finally {
      await c.close();
    }
  });

  coordinatorConformance(async () => {
    const sessions: ZooKeeperCoordinator[] = [];
    return {
      open: async () => {
        const c = await open(infra().zookeeper.connectString);
        sessions.push(c);
        return c;
      },
      closeSession: (c: Coordinator) => (c as ZooKeeperCoordinator).close(),
      cleanup: async () => {
        await Promise.all(sessions.map((s) => s.close()));
      },
    };
  });
});

describe("ZooKeeperCoordinator failure behaviour", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  });

  it("never connects to a dead port without throwing; calls fail fast with Unavailable", async () => {
    const c = new ZooKeeperCoordinator({ connectString: `127.0.0.1:${await freePort()}`, sessionTimeoutMs: 2_000 });
    cleanups.push(() => c.close());
    await new Promise((r) => setTimeout(r, 200));
    expect(c.sessionState).not.toBe("connected");
    expect(c.status().ok).toBe(false);
    const t0 = Date.now();
    await expect(c.get("/x")).rejects.toMatchObject({ kind: "Unavailable" });
    await expect(c.create("/x", new Uint8Array())).rejects.toMatchObject({ kind: "Unavailable" });
    expect(Date.now() - t0).toBeLessThan(200);
  });

  it("a server stop surfaces as disconnected + Unavailable for writes", async () => {
    const zk = await startZooKeeper();
    cleanups.push(() => zk.stop());
    const c = await open(zk.connectString, 2_000);
    cleanups.push(() => c.close());
    await c.create("/ctr", new TextEncoder().encode("0"));
    const states: string[] = [];
    c.onSessionState((s) => states.push(s));
    await zk.stop();
    const deadline = Date.now() + 10_000;
    while (c.sessionState === "connected" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(states[0]).toBe("disconnected");
    await expect(c.compareAndSet("/ctr", new TextEncoder().encode("1"), 0)).rejects.toMatchObject({ kind: "Unavailable" });
  });

  it("connection loss during a write surfaces as Unavailable (outcome unknown)", async () => {
    const proxy = new TcpProxy(await freePort(), { host: "127.0.0.1", port: infra().zookeeper.port });
    cleanups.push(() => proxy.down());
    await proxy.up();
    const c = await open(`127.0.0.1:${proxy.port}`, 10_000);
    cleanups.push(() => c.close());
    const path = `/loss-${Date.now()}`;
    await c.create(path, new TextEncoder().encode("0"));
    const write = c.compareAndSet(path, new TextEncoder().encode("1"), 0);
    await proxy.down();
    await expect(write).rejects.toMatchObject({ kind: "Unavailable" });
  });

  it("session expiry: emits expired, drops the ephemerals, opens a new session that can re-register", async () => {
    const proxy = new TcpProxy(await freePort(), { host: "127.0.0.1", port: infra().zookeeper.port });
    cleanups.push(() => proxy.down());
    await proxy.up();
    const c = await open(`127.0.0.1:${proxy.port}`, 2_000);
    cleanups.push(() => c.close());
    const observer = await open(infra().zookeeper.connectString);
    cleanups.push(() => observer.close());
    const states: string[] = [];
    c.onSessionState((s) => states.push(s));
    const dir = `/expiry-${Date.now()}`;
    await c.registerEphemeral(`${dir}/me`, new Uint8Array([1]));
    expect(await observer.children(dir)).toEqual(["me"]);

    await proxy.down(); // partition longer than the session timeout: the server expires the session
    const gone = Date.now() + 15_000;
    while ((await observer.children(dir)).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 200));
    expect(await observer.children(dir)).toEqual([]);
    await proxy.up();
    const back = Date.now() + 20_000;
    while (!(states.includes("expired") && c.sessionState === "connected") && Date.now() < back) {
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log("zookeeper-coordinator.int: session states", states.join(" -> "));
    expect(states).toContain("expired");
    expect(c.sessionState).toBe("connected");
    await c.registerEphemeral(`${dir}/me`, new Uint8Array([2]));
    expect(await observer.children(dir)).toEqual(["me"]);
  });
});
