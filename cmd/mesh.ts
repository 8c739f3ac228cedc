/**
 * Composition roots: the embedded mesh (every service and the gateway in one process on one
 * engine), one service alone, or the gateway alone. Nothing below reaches for globals: config,
 * logger, engine and metrics are built here and passed down.
 */
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Config, ServiceName } from "../platform/config.js";
import { openEngine, type Engine } from "../platform/engine.js";
import type { RunningGrpcServer } from "../platform/grpc/server.js";
import { createMetrics } from "../platform/metrics.js";
import { startEdge, type Edge } from "../gateway/edge.js";
import { SERVICE_MODULES } from "../services/index.js";
import { serveService } from "../services/serve.js";

export interface Running {
  readonly gatewayPort?: number;
  readonly grpcPorts: Partial<Record<ServiceName, number>>;
  /** The engine this process runs on. */
  readonly engine?: Engine;
  /** The metrics of this process (gateway; embedded: every service's too; a service alone: its own), for the metrics listener. */
  readonly metrics?: Registry;
  close(): Promise<void>;
}

export interface MeshOptions {
  /** Environment for the gateway's auth and rate-limit settings (gateway/auth/config.ts); default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Every service on loopback gRPC plus the gateway, sharing one engine (memory by default). */
export async function runEmbedded(config: Config, log: Logger, options: MeshOptions = {}): Promise<Running> {
  const engine = await openEngine(config, log);
  const metrics = createMetrics();
  const servers: { name: ServiceName; server: RunningGrpcServer }[] = [];
  // Services start in SERVICE_MODULES order, so a service reaches only those listed before it.
  const upstreamAddress = (name: ServiceName): string => {
    const started = servers.find((s) => s.name === name);
    if (!started) throw new Error(`service ${name} is not started yet in the embedded mesh: list it before its callers in SERVICE_MODULES`);
    return `127.0.0.1:${started.server.port}`;
  };
  try {
    for (const module of Object.values(SERVICE_MODULES)) {
      const server = await serveService(module, { config, log, engine, upstreamAddress }, { host: "127.0.0.1", port: 0, metrics, inProcess: config.inProcessHop });
      servers.push({ name: module.name, server });
    }
    const edge = await startEdge({
      config,
      engine,
      log: log.child({ component: "gateway" }),
      metrics,
      ...(options.env ? { env: options.env } : {}),
      upstreams: servers.map(({ name, server }) => ({
        module: SERVICE_MODULES[name],
        address: `127.0.0.1:${server.port}`,
      })),
    });
    return {
      gatewayPort: edge.port,
      grpcPorts: Object.fromEntries(servers.map(({ name, server }) => [name, server.port])),
      engine,
      metrics: metrics.registry,
      close: () => closeAll(config, edge, servers, engine),
    };
  } catch (e) {
    await closeAll(config, undefined, servers, engine);
    throw e;
  }
}

/** One service in its own process (cluster engine in deployments). */
export async function runService(name: ServiceName, config: Config, log: Logger): Promise<Running> {
  const engine = await openEngine(config, log);
  const metrics = createMetrics({ labels: { service: name } });
  const port = config.grpc.port || config.upstreams[name].port;
  const upstreamAddress = (upstream: ServiceName): string => hostPort(config.upstreams[upstream]);
  const server = await serveService(SERVICE_MODULES[name], { config, log, engine, upstreamAddress }, { host: config.grpc.host, port, metrics });
  server.onClose("engine", () => engine.close());
  return { grpcPorts: { [name]: server.port }, engine, metrics: metrics.registry, close: () => server.shutdown(config.shutdownGraceMs) };
}

/** The gateway alone, forwarding to the services at their configured addresses. */
export async function runGateway(config: Config, log: Logger, options: MeshOptions = {}): Promise<Running> {
  const engine = await openEngine(config, log);
  const metrics = createMetrics({ labels: { service: "gateway" } });
  const edge = await startEdge({
    config,
    engine,
    log,
    metrics,
    ...(options.env ? { env: options.env } : {}),
    upstreams: Object.values(SERVICE_MODULES).map((module) => ({ module, address: hostPort(config.upstreams[module.name]) })),
  });
  return {
    gatewayPort: edge.port,
    grpcPorts: {},
    engine,
    metrics: metrics.registry,
    close: async () => {
      await edge.close(config.shutdownGraceMs);
      await engine.close();
    },
  };
}

/** "host:port", IPv6 literals in brackets (what gRPC targets expect). */
function hostPort({ host, port }: { readonly host: string; readonly port: number }): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

async function closeAll(
  config: Config,
  edge: Edge | undefined,
  servers: readonly { server: RunningGrpcServer }[],
  engine: Engine,
): Promise<void> {
  // Edge first so no new calls arrive, then the services drain, then the shared engine.
  await edge?.close(config.shutdownGraceMs);
  // Reverse start order: a service's callers stop before it does (chat hands its worker id
  // back to token-range on the way out).
  for (const { server } of [...servers].reverse()) await server.shutdown(config.shutdownGraceMs);
  await engine.close();
}
