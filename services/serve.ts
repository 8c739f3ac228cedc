/**
 * Serves one service module over internal gRPC: builds it on the engine, mounts it with health
 * and reflection, and keeps its health status in step with the engine's readiness, so an
 * unreachable backend shows as NOT_SERVING (and fails the gateway's /readyz) instead of
 * crashing the process. Every call's caller comes from the gateway's verified identity assertion.
 */
import type { Logger } from "pino";
import type { Engine } from "../platform/engine.js";
import type { Metrics } from "../platform/metrics.js";
import { ServingStatus } from "../platform/grpc/health.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../platform/grpc/server.js";
import { verifiedIdentity } from "../platform/grpc/verified-identity.js";
import { meshKeyOf } from "../platform/mesh-secret.js";
import type { ServiceDeps, ServiceModule } from "./module.js";

const READINESS_POLL_MS = 2_000;

export interface ServeOptions {
  readonly host: string;
  readonly port: number;
  readonly metrics?: Metrics;
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
  });
  const stopTracking = trackReadiness(deps.engine, server, module.desc.typeName, log);
  server.onClose(`${module.name} readiness`, stopTracking);
  if (running.close) server.onClose(module.name, () => running.close!());
  return server;
}

function trackReadiness(engine: Engine, server: RunningGrpcServer, typeName: string, log: Logger): () => void {
  let last: boolean | undefined;
  const update = async (): Promise<void> => {
    const r = await engine.readiness();
    if (r.ready === last) return;
    last = r.ready;
    const status = r.ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    server.health.setStatus("", status);
    server.health.setStatus(typeName, status);
    if (r.ready) log.info("backends ready: serving");
    else log.warn({ checks: r.checks.filter((c) => !c.ok) }, "backends not ready: NOT_SERVING");
  };
  void update();
  const timer = setInterval(() => void update().catch((err: unknown) => log.error({ err }, "readiness poll failed")), READINESS_POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
