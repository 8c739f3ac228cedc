// The CLI as a user runs it: bad config, unreachable backends, graceful shutdown.
import { afterEach, describe, expect, it } from "vitest";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../testkit/processes.js";

const procs: MeshProcess[] = [];
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.stop()));
});
const start = (args: string[], env: Record<string, string>) => {
  const p = spawnSwitchboard(args, env);
  procs.push(p);
  return p;
};

describe("switchboard CLI", () => {
  it("refuses a malformed SWITCHBOARD_CASSANDRA_CONTACT_POINTS with one line naming it", async () => {
    const p = start(["redirect"], { SWITCHBOARD_ENGINE: "cluster", SWITCHBOARD_CASSANDRA_CONTACT_POINTS: "db1:90x2" });
    expect(await p.exited).toBe(2);
    const lines = p.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^switchboard: invalid configuration: SWITCHBOARD_CASSANDRA_CONTACT_POINTS /);
    expect(lines[0]).toContain('"db1:90x2"');
  });

  it.each([["shortener"], ["gateway"]])("%s on the cluster engine without SWITCHBOARD_MESH_SECRET: exit 2, one line naming it", async (role) => {
    const p = start([role], { SWITCHBOARD_ENGINE: "cluster", SWITCHBOARD_JWT_HS256_SECRET: "cli-test-secret-0123456789abcdef0123456789" });
    expect(await p.exited).toBe(2);
    const lines = p.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^switchboard: invalid configuration: SWITCHBOARD_MESH_SECRET is required on the cluster engine/);
  });

  it("refuses a TLS certificate file it cannot read: exit 2, a line naming the variable and the file", async () => {
    const p = start(["gateway"], {
      SWITCHBOARD_GATEWAY_PORT: String(await freePort()),
      SWITCHBOARD_GATEWAY_TLS_CERT_FILE: "/nonexistent/tls.crt",
      SWITCHBOARD_GATEWAY_TLS_KEY_FILE: "/nonexistent/tls.key",
    });
    expect(await p.exited).toBe(2);
    expect(p.output()).toContain("switchboard: invalid configuration: SWITCHBOARD_GATEWAY_TLS_CERT_FILE cannot be read: /nonexistent/tls.crt (ENOENT)");
    expect(p.output()).not.toMatch(/\n\s+at /);
  });

  it("refuses an unknown role with the usage", async () => {
    const p = start(["frobnicate"], {});
    expect(await p.exited).toBe(2);
    expect(p.output()).toContain('unknown role "frobnicate"');
    expect(p.output()).toContain("usage: switchboard");
  });

  it("keeps running with unreachable backends, reports NOT_SERVING, and stops cleanly on SIGTERM", async () => {
    const [grpcPort, gatewayPort, dead] = [await freePort(), await freePort(), await freePort()];
    const backends = {
      SWITCHBOARD_ENGINE: "cluster",
      SWITCHBOARD_CASSANDRA_CONTACT_POINTS: `127.0.0.1:${dead}`,
      SWITCHBOARD_ZOOKEEPER_CONNECT: `127.0.0.1:${dead}`,
      SWITCHBOARD_NATS_URL: `nats://127.0.0.1:${dead}`,
      SWITCHBOARD_REDIS_URL: `redis://127.0.0.1:${dead}`,
      SWITCHBOARD_JWT_HS256_SECRET: "cli-test-secret-0123456789abcdef0123456789",
      SWITCHBOARD_MESH_SECRET: "cli-test-mesh-secret-0123456789abcdef012345",
    };
    const service = start(["redirect"], { ...backends, SWITCHBOARD_GRPC_PORT: String(grpcPort) });
    const gateway = start(["gateway"], {
      ...backends,
      SWITCHBOARD_GATEWAY_PORT: String(gatewayPort),
      SWITCHBOARD_UPSTREAM_REDIRECT: `127.0.0.1:${grpcPort}`,
    });

    const report = await waitFor("the gateway's /readyz", async () => {
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/readyz`);
      const body = (await res.json()) as { ready: boolean; checks: { name: string; ok: boolean; detail: string }[] };
      const redirect = body.checks.find((c) => c.name === "redirect");
      return res.status === 503 && redirect?.detail === "not_serving" ? body : undefined;
    });
    expect(report.ready).toBe(false);
    // Public readiness names services and states, never where they live.
    expect(JSON.stringify(report)).not.toMatch(/127\.0\.0\.1|:\d{2,5}\b/);
    // Upstreams that are not running at all are named too.
    expect(report.checks.find((c) => c.name === "chat")?.ok).toBe(false);
    expect((await fetch(`http://127.0.0.1:${gatewayPort}/healthz`)).status).toBe(200);

    const probe = start(["probe", "127.0.0.1"], { SWITCHBOARD_GRPC_PORT: String(grpcPort) });
    expect(await probe.exited).toBe(1);
    expect(probe.output()).toContain("NOT_SERVING");

    expect(service.child.exitCode).toBeNull();
    expect(await service.stop()).toBe(0);
    expect(await gateway.stop()).toBe(0);
  }, 60_000);
});
