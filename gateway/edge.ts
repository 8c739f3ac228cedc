/**
 * Assembles the gateway: for each public service a forwarding impl over a grpc-js client to
 * its internal address, reflection over the public contracts, the gateway's own health, and
 * readiness from the upstreams' gRPC health.
 */
import { create, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { createGrpcClient, type GrpcClient } from "../platform/grpc/client.js";
import { HealthService } from "../platform/grpc/health.js";
import { createReflection, ServerReflectionV1, ServerReflectionV1Alpha } from "../platform/grpc/reflection.js";
import type { Config } from "../platform/config.js";
import type { Engine } from "../platform/engine.js";
import type { Metrics } from "../platform/metrics.js";
import type { ServiceModule } from "../services/module.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { createGatewayAuth } from "./auth/index.js";
import type { Env } from "./auth/config.js";
import { forwardingImpl, type AnyUpstreamClient } from "./forward.js";
import { startGateway, type Gateway, type HttpDoor, type MountedService } from "./gateway.js";
import { combineProbes, type ReadinessProbe } from "./readiness.js";
import { restShortenDoor } from "./rest-shorten.js";
import { createGatewayRedirects, type GatewayRedirects } from "./redirect-door.js";

export interface EdgeOptions {
  readonly config: Config;
  /** The gateway's own backends (caches, rate limits, events); shared with the services when embedded. */
  readonly engine: Engine;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Every service module with the address ("host:port") of its internal gRPC server. */
  readonly upstreams: readonly { module: ServiceModule; address: string }[];
  readonly doors?: readonly HttpDoor[];
  /** Serve `GET|HEAD /{code}` redirects (default true). */
  readonly redirects?: boolean;
  /** Where auth and rate-limit settings are read from (gateway/auth/config.ts); default process.env. */
  readonly env?: Env;
}

export interface Edge extends Gateway {
  readonly publicServices: readonly string[];
  /** The redirect door's near-cache and click emitter (absent when disabled). */
  readonly redirects?: GatewayRedirects;
}

const UPSTREAM_HEALTH_TIMEOUT_MS = 1_500;

export async function startEdge(opts: EdgeOptions): Promise<Edge> {
  const auth = createGatewayAuth({
    env: opts.env ?? process.env,
    engine: opts.engine,
    engineKind: opts.config.engine,
    log: opts.log,
    registry: opts.metrics.registry,
  });
  const clients: GrpcClient<DescService>[] = [];
  const mounted: MountedService[] = [];
  const probes: ReadinessProbe[] = [];
  for (const { module, address } of opts.upstreams) {
    const health = createGrpcClient(Health, address, { defaultTimeoutMs: UPSTREAM_HEALTH_TIMEOUT_MS });
    clients.push(health as unknown as GrpcClient<DescService>);
    probes.push(upstreamProbe(module.name, module.desc.typeName, address, health));
    if (!module.public) continue;
    const client = createGrpcClient(module.desc, address);
    clients.push(client);
    const impl = forwardingImpl(module.desc, client as unknown as AnyUpstreamClient, auth.headersFor);
    for (const name of module.internalMethods ?? []) blockMethod(impl, module.desc, name);
    mounted.push({ desc: module.desc, impl });
  }
  const restDoors: HttpDoor[] = [];
  const shortenerAddress = opts.upstreams.find((u) => u.module.name === "shortener")?.address;
  if (shortenerAddress) {
    const shortener = createGrpcClient(ShortenerService, shortenerAddress);
    clients.push(shortener as unknown as GrpcClient<DescService>);
    restDoors.push(
      restShortenDoor({
        shortener,
        authenticator: auth.authenticator,
        limiter: auth.limiter,
        trustProxyHops: auth.settings.rateLimit.trustProxyHops,
        publicBaseUrl: opts.config.gateway.publicBaseUrl,
      }),
    );
  }
  const publicDescs = mounted.map((m) => m.desc);
  const reflection = createReflection(publicDescs);
  const ownHealth = new HealthService(publicDescs.map((d) => d.typeName));
  const services: MountedService[] = [
    ...mounted,
    { desc: ServerReflectionV1, impl: reflection.v1 as ServiceImpl<DescService> },
    { desc: ServerReflectionV1Alpha, impl: reflection.v1alpha as ServiceImpl<DescService> },
    { desc: Health, impl: ownHealth as unknown as ServiceImpl<DescService> },
  ];
  const redirects =
    opts.redirects === false
      ? undefined
      : await createGatewayRedirects(opts.engine, opts.log.child({ component: "redirect-door" }), {
          registry: opts.metrics.registry,
        });
  const doors: HttpDoor[] = [...restDoors, ...(opts.doors ?? [])];
  const gateway = await startGateway({
    host: opts.config.gateway.host,
    port: opts.config.gateway.port,
    corsOrigins: opts.config.gateway.corsOrigins,
    log: opts.log,
    registry: opts.metrics.registry,
    services,
    readiness: combineProbes(probes),
    doors,
    // The redirect door is the hot path: tried first, before the per-request wrapper.
    ...(redirects ? { fastDoors: [redirects.door] } : {}),
    interceptors: [auth.interceptor],
    contextValues: auth.contextValues,
    limits: opts.config.gateway.limits,
  });
  return {
    ...gateway,
    publicServices: publicDescs.map((d) => d.typeName),
    ...(redirects ? { redirects } : {}),
    async close(graceMs) {
      ownHealth.shutdown();
      await gateway.close(graceMs);
      await redirects?.close();
      for (const c of clients) c.close();
    },
  };
}

function blockMethod(impl: ServiceImpl<DescService>, desc: DescService, name: string): void {
  const method = desc.methods.find((m) => m.name === name);
  if (!method) throw new Error(`${desc.typeName} has no method ${name} to keep internal`);
  (impl as Record<string, unknown>)[method.localName] = () => {
    throw new ConnectError(`${desc.typeName}/${name} is internal and not served by the gateway`, Code.Unimplemented);
  };
}

function upstreamProbe(
  name: string,
  typeName: string,
  address: string,
  health: GrpcClient<typeof Health>,
): ReadinessProbe {
  return async () => {
    try {
      const res = await health.check(create(HealthCheckRequestSchema, { service: typeName }));
      const ok = res.status === HealthCheckResponse_ServingStatus.SERVING;
      const detail = `${address}: ${HealthCheckResponse_ServingStatus[res.status]}`;
      return { ready: ok, checks: [{ name, ok, detail }] };
    } catch (e) {
      const detail = `${address}: ${e instanceof Error ? e.message : String(e)}`;
      return { ready: false, checks: [{ name, ok: false, detail }] };
    }
  };
}
