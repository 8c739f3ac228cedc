/**
 * Issue 10 item 2 acceptance on the cluster engine, one process per service: with the presence
 * service stopped, and separately with Redis stopped, the gateway's /readyz stays 200 and names
 * the degraded part (Redis: and presence, which needs it); redirects and link creation keep working. This file runs its own Redis so
 * stopping it leaves the run's shared one to the other files.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PresenceService } from "../gen/switchboard/presence/v1/presence_pb.js";
import { SERVICE_NAMES, upstreamVariable, type ServiceName } from "../platform/config.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../testkit/keyspace.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../testkit/processes.js";
import { infraEnv, startRedis, type RedisHandle } from "../testkit/servers/index.js";
import { signHs256 } from "./auth/jwt.js";

interface Report {
  ready: boolean;
  degraded: string[];
  checks: { name: string; kind: string; critical: boolean; ok: boolean; detail: string }[];
}

const keyspace = uniqueKeyspaceName("degraded_ready");
let env: Record<string, string>;
let redis: RedisHandle | undefined;
let gatewayUrl: string;
const services = new Map<ServiceName, MeshProcess>();
let gateway: MeshProcess | undefined;

const startService = (name: ServiceName) =>
  services.set(name, spawnSwitchboard([name], { ...env, SWITCHBOARD_GRPC_PORT: env[upstreamVariable(name)]!.split(":")[1]! }));

async function readyz(): Promise<{ status: number; text: string; report: Report }> {
  const res = await fetch(`${gatewayUrl}/readyz`);
  const text = await res.text();
  return { status: res.status, text, report: JSON.parse(text) as Report };
}

/** Waits until /readyz shows exactly `degraded` (sorted) and returns it. */
const degradedBecomes = (degraded: string[], timeoutMs = 60_000) =>
  waitFor(
    `/readyz degraded = [${degraded.join(", ")}]`,
    async () => {
      const r = await readyz();
      return JSON.stringify([...r.report.degraded].sort()) === JSON.stringify(degraded) ? r : undefined;
    },
    timeoutMs,
  );

const token = () => signHs256({ sub: "degraded-bob", exp: Math.floor(Date.now() / 1000) + 600 }, env["SWITCHBOARD_JWT_HS256_SECRET"]!);

/** Creates a link through the REST door and follows it through the redirect door. */
async function createAndRedirect(tag: string): Promise<void> {
  const longUrl = `https://example.org/${tag}-${Date.now()}`;
  const created = await fetch(`${gatewayUrl}/api/v1/shorten`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token()}` },
    body: JSON.stringify({ long_url: longUrl }),
  });
  expect(created.status, await created.clone().text()).toBe(201);
  const { code } = (await created.json()) as { code: string };
  const hop = await fetch(`${gatewayUrl}/${code}`, { redirect: "manual" });
  expect(hop.status).toBe(302);
  expect(hop.headers.get("location")).toBe(longUrl);
}

beforeAll(async () => {
  redis = await startRedis();
  env = { ...infraEnv(infra()), SWITCHBOARD_REDIS_URL: redis.url, SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace };
  for (const name of SERVICE_NAMES) env[upstreamVariable(name)] = `127.0.0.1:${await freePort()}`;
  for (const name of SERVICE_NAMES) startService(name);
  const port = await freePort();
  gateway = spawnSwitchboard(["gateway"], { ...env, SWITCHBOARD_GATEWAY_PORT: String(port) });
  gatewayUrl = `http://127.0.0.1:${port}`;
  await degradedBecomes([], 120_000);
}, 150_000);

afterAll(async () => {
  await Promise.all([gateway?.stop(), ...[...services.values()].map((p) => p.stop())]);
  await redis?.stop();
  await dropKeyspace(keyspace);
}, 60_000);

describe("the gateway stays ready while redirects can be served", () => {
  it("all up: 200, nothing degraded, Cassandra is the critical part", async () => {
    const { status, report } = await readyz();
    expect(status).toBe(200);
    expect(report.ready).toBe(true);
    expect(report.checks.filter((c) => c.critical).map((c) => c.name)).toEqual(["cassandra"]);
    await createAndRedirect("all-up");
  });

  it("presence stopped: 200, degraded names presence only; creation and redirects work", async () => {
    await services.get("presence")!.stop();
    const { status, text, report } = await degradedBecomes(["presence"]);
    expect(status).toBe(200);
    expect(report.ready).toBe(true);
    expect(report.checks.find((c) => c.name === "presence")).toEqual({ name: "presence", kind: "service", critical: false, ok: false, detail: "unavailable" });
    expect(text).not.toMatch(/127\.0\.0\.1|ECONNREFUSED/);
    await createAndRedirect("no-presence");
    // A call to it fails fast and names it, over Connect and gRPC.
    for (const transport of [createConnectTransport({ baseUrl: gatewayUrl, httpVersion: "1.1" }), createGrpcTransport({ baseUrl: gatewayUrl })]) {
      const t0 = Date.now();
      const err = await createClient(PresenceService, transport)
        .heartbeat({ deviceId: "d1" }, { headers: { authorization: `Bearer ${token()}` } })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unavailable);
      expect((err as ConnectError).rawMessage).toBe("presence service is unavailable");
      expect(Date.now() - t0).toBeLessThan(2_000);
    }
    startService("presence");
    await degradedBecomes([]);
  }, 90_000);

  it("Redis stopped: 200, degraded names redis and presence (the only service that needs it); creation and redirects work", async () => {
    await redis!.stop();
    const { status, text, report } = await degradedBecomes(["presence", "redis"]);
    expect(status).toBe(200);
    expect(report.ready).toBe(true);
    // Presence keeps device deadlines in Redis (NOT_SERVING); every other service still SERVING.
    const services = report.checks.filter((c) => c.kind === "service");
    expect(services.filter((c) => !c.name.includes("/")).map((c) => `${c.name} ${c.detail}`).sort()).toEqual(
      SERVICE_NAMES.map((n) => `${n} ${n === "presence" ? "not_serving" : "serving"}`).sort(),
    );
    // Chat servers' own entries ("chat/<id>": placement) are up too.
    expect(services.filter((c) => c.name.includes("/")).every((c) => c.ok)).toBe(true);
    expect(text).not.toMatch(/127\.0\.0\.1|redis:\/\//);
    await createAndRedirect("no-redis");
    await createAndRedirect("no-redis-again");
  }, 90_000);
});
