/**
 * Serves one service module over internal gRPC: builds it on the engine, mounts it with health
 * and reflection, and keeps its health status in step with what the module declares it needs
 * (ServiceModule.needs): NOT_SERVING while one of those backends or upstream services is down,
 * SERVING otherwise, so a backend the service does not use cannot take it out of rotation and an
 * unreachable one does not crash the process. Every call's caller comes from the gateway's
 * verified identity assertion.
 */
import type { Logger } from "pino";
import { create } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { ServiceName } from "../platform/config.js";
import { isBackend, unmetNeeds, type Backend, type ReadinessCheck } from "../platform/engine.js";
import { createGrpcClient, type GrpcClient } from "../platform/grpc/client.js";
import { Health } from "../platform/grpc/health.js";
import type { Metrics } from "../platform/metrics.js";
import { ServingStatus } from "../platform/grpc/health.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../platform/grpc/server.js";
import { verifiedIdentity } from "../platform/grpc/verified-identity.js";
import { meshKeyOf } from "../platform/mesh-secret.js";
import type { ServiceDeps, ServiceModule, ServiceNeed } from "./module.js";

const READINESS_POLL_MS = 2_000;
const UPSTREAM_HEALTH_TIMEOUT_MS = 1_500;

export interface ServeOptions {
  readonly host: string;
  readonly port: number;
  readonly metrics?: Metrics;
  /** Callers in this same process skip the network (the embedded mesh; see platform/grpc/in-process.ts). */
  readonly inProcess?: boolean;
}

export async function serveService(
  module: ServiceModule,
  deps: ServiceDeps,
  opts: ServeOptions,
): Promise<RunningGrpcServer> {
  const log = deps.log.child({ service: module.name });
  // Before building the module: a missing mesh secret stops the process before it opens anything.
  const meshKey = meshKeyOf(deps.config);
  const running = await module.create({ ...deps, log, ...(opts.metrics ? { registry: opts.metrics.registry } : {}) });
  const server = await startGrpcServer({
    services: [grpcService(module.desc, running.impl)],
    host: opts.host,
    port: opts.port,
    log,
    // Callers are whoever the gateway's signed assertion says, nobody else (platform/identity-assertion.ts).
    contextValues: verifiedIdentity(meshKey, log),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(opts.inProcess ? { inProcess: true } : {}),
  });
  const stopTracking = trackReadiness(needsProbe(module.needs ?? [], deps), server, module.desc.typeName, log);
  server.onClose(`${module.name} readiness`, stopTracking);
  if (running.close) server.onClose(module.name, () => running.close!());
  if (running.drain) server.onDrain(module.name, (graceMs) => running.drain!(graceMs));
  if (running.listening) {
    try {
      await running.listening(`${advertised(deps.config.advertiseHost)}:${server.port}`);
    } catch (e) {
      await server.shutdown(0);
      throw e;
    }
  }
  return server;
}

/** IPv6 literals in brackets, as gRPC targets want them. */
function advertised(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** What is down among the module's needs, polled; `close` releases the upstream health clients. */
interface NeedsProbe {
  unmet(): Promise<ReadinessCheck[]>;
  close(): void;
}

function needsProbe(needs: readonly ServiceNeed[], deps: ServiceDeps): NeedsProbe {
  const backends = needs.filter((n): n is Backend => isBackend(n));
  const upstreams = needs.filter((n): n is ServiceName => !isBackend(n));
  const clients = new Map<ServiceName, GrpcClient<typeof Health>>();
  const upstreamCheck = async (name: ServiceName): Promise<ReadinessCheck> => {
    try {
      let client = clients.get(name);
      if (!client) {
        client = createGrpcClient(Health, deps.upstreamAddress(name), { defaultTimeoutMs: UPSTREAM_HEALTH_TIMEOUT_MS });
        clients.set(name, client);
      }
      const res = await client.check(create(HealthCheckRequestSchema, { service: "" }));
      const ok = res.status === HealthCheckResponse_ServingStatus.SERVING;
      return { name, ok, detail: ok ? "serving" : "not serving" };
    } catch (e) {
      return { name, ok: false, detail: e instanceof Error ? e.message : String(e) };
    }
  };
  return {
    async unmet() {
      const [engine, ...ups] = await Promise.all([deps.engine.readiness(), ...upstreams.map(upstreamCheck)]);
      return [...unmetNeeds(engine, backends), ...ups.filter((c) => !c.ok)];
    },
    close() {
      for (const c of clients.values()) c.close();
    },
  };
}

function trackReadiness(probe: NeedsProbe, server: RunningGrpcServer, typeName: string, log: Logger): () => void {
  let last: boolean | undefined;
  const update = async (): Promise<void> => {
    const down = await probe.unmet();
    const ready = down.length === 0;
    if (ready === last) return;
    last = ready;
    const status = ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    server.health.setStatus("", status);
    server.health.setStatus(typeName, status);
    if (ready) log.info("needs met: serving");
    else log.warn({ down }, "a backend or upstream this service needs is down: NOT_SERVING");
  };
  void update().catch((err: unknown) => log.error({ err }, "readiness poll failed"));
  const timer = setInterval(() => void update().catch((err: unknown) => log.error({ err }, "readiness poll failed")), READINESS_POLL_MS);
  timer.unref();
  return () => {
    clearInterval(timer);
    probe.close();
  };
}
