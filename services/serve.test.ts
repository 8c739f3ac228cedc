import { create } from "@bufbuild/protobuf";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { PresenceService } from "../gen/switchboard/presence/v1/presence_pb.js";
import { loadConfig } from "../platform/config.js";
import { openMemoryEngine, type Engine, type ReadinessCheck } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { Health } from "../platform/grpc/health.js";
import type { RunningGrpcServer } from "../platform/grpc/server.js";
import { freePort, waitFor } from "../testkit/processes.js";
import { noUpstreams, type ServiceModule, type ServiceNeed } from "./module.js";
import { notYetImplemented } from "./not-yet.js";
import { serveService } from "./serve.js";

const up = (name: string): ReadinessCheck => ({ name, ok: true, detail: "connected" });
const down = (name: string): ReadinessCheck => ({ name, ok: false, detail: "not connected" });

/** A memory engine that reports cluster-style checks: Redis down, everything else up. */
function engineWithRedisDown(): Engine {
  const checks = [up("cassandra"), up("zookeeper"), up("nats"), down("redis")];
  return { ...openMemoryEngine(silentLog), readiness: async () => ({ ready: false, checks }) };
}

const module = (needs?: readonly ServiceNeed[]): ServiceModule => ({
  name: "presence",
  desc: PresenceService,
  public: true,
  ...(needs ? { needs } : {}),
  create: async () => notYetImplemented(PresenceService, "test"),
});

const servers: RunningGrpcServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.shutdown(0)));
});

async function serve(needs: readonly ServiceNeed[] | undefined, engine: Engine, upstreamAddress = noUpstreams) {
  const port = await freePort();
  const config = loadConfig({});
  servers.push(await serveService(module(needs), { config, engine, log: pino({ level: "silent" }), upstreamAddress }, { host: "127.0.0.1", port }));
  const health = createGrpcClient(Health, `127.0.0.1:${port}`, { defaultTimeoutMs: 1_000 });
  const statusOf = async (service: string) => (await health.check(create(HealthCheckRequestSchema, { service }))).status;
  return { health, statusOf };
}

const settled = (statusOf: (s: string) => Promise<number>, want: HealthCheckResponse_ServingStatus) =>
  waitFor(`status ${HealthCheckResponse_ServingStatus[want]}`, async () =>
    (await statusOf("")) === want && (await statusOf(PresenceService.typeName)) === want ? true : undefined,
  10_000);

describe("serveService: health follows what the module needs", () => {
  it("stays SERVING when only a backend it does not need is down", async () => {
    const { health, statusOf } = await serve(["cassandra", "nats"], engineWithRedisDown());
    await settled(statusOf, HealthCheckResponse_ServingStatus.SERVING);
    health.close();
  });

  it("a module that needs nothing (a stub) stays SERVING", async () => {
    const { health, statusOf } = await serve(undefined, engineWithRedisDown());
    await settled(statusOf, HealthCheckResponse_ServingStatus.SERVING);
    health.close();
  });

  it("is NOT_SERVING while a backend it needs is down", async () => {
    const { health, statusOf } = await serve(["cassandra", "redis"], engineWithRedisDown());
    await settled(statusOf, HealthCheckResponse_ServingStatus.NOT_SERVING);
    health.close();
  });

  it("is NOT_SERVING while an upstream service it needs does not answer", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const { health, statusOf } = await serve(["tokenrange"], openMemoryEngine(silentLog), () => dead);
    await settled(statusOf, HealthCheckResponse_ServingStatus.NOT_SERVING);
    health.close();
  });

  it("is SERVING when the upstream it needs is SERVING", async () => {
    const first = await serve(undefined, openMemoryEngine(silentLog));
    await settled(first.statusOf, HealthCheckResponse_ServingStatus.SERVING);
    const upstream = `127.0.0.1:${servers[0]!.port}`;
    const { health, statusOf } = await serve(["tokenrange"], openMemoryEngine(silentLog), () => upstream);
    await settled(statusOf, HealthCheckResponse_ServingStatus.SERVING);
    health.close();
    first.health.close();
  });

  it("the memory engine's single check counts for every need", async () => {
    const engine = openMemoryEngine(silentLog);
    const { health, statusOf } = await serve(["cassandra"], engine);
    await settled(statusOf, HealthCheckResponse_ServingStatus.SERVING);
    await engine.close();
    await settled(statusOf, HealthCheckResponse_ServingStatus.NOT_SERVING);
    health.close();
  });
});
