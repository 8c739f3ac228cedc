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
import { servedContracts } from "./served-contracts.js";
import type { Config } from "../platform/config.js";
import { isBackend, type Backend, type Engine } from "../platform/engine.js";
import { meshKeyOf } from "../platform/mesh-secret.js";
import type { Metrics } from "../platform/metrics.js";
import type { ServiceModule } from "../services/module.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { createGatewayAuth } from "./auth/index.js";
import { limitBulkCreate } from "./bulk-create-limit.js";
import type { CreateRateLimiter } from "./rate-limit.js";
import type { Env } from "./auth/config.js";
import { forwardingImpl, type AnyUpstreamClient } from "./forward.js";
import { ChatPlacement } from "./chat-placement.js";
import { chatServersPath } from "../services/chat/cluster/registry.js";
import { StreamGuard } from "./stream-guard.js";
import { startGateway, type Gateway, type HttpDoor, type MountedService } from "./gateway.js";
import { combineProbes, type Check, type PartProbe } from "./readiness.js";
import { restShortenDoor } from "./rest-shorten.js";
import { fillShortUrls } from "./short-urls.js";
import { createMessageLimits } from "./rpc-limits.js";
import { identityAssertionHeaders } from "./auth/interceptor.js";
import { subscribeDoor, SUBSCRIBE_PATH } from "./subscribe-door.js";
import { unaryDoor } from "./unary-door.js";
import { sessionDoor, SESSION_PATH } from "./session-door.js";
import { ChatService } from "../gen/switchboard/chat/v1/chat_pb.js";
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

/**
 * The gateway's own backends it cannot serve redirects without: the link store (and the API key
 * store) live in Cassandra. Redis is a cache in front of it, NATS carries invalidation and clicks,
 * ZooKeeper is not used by the edge: their loss degrades the gateway, it stays ready.
 */
export const GATEWAY_NEEDS: readonly Backend[] = ["cassandra"];

export async function startEdge(opts: EdgeOptions): Promise<Edge> {
  const meshKey = meshKeyOf(opts.config);
  const auth = createGatewayAuth({
    env: opts.env ?? process.env,
    engine: opts.engine,
    engineKind: opts.config.engine,
    meshKey,
    log: opts.log,
    registry: opts.metrics.registry,
  });
  // One guard for every public service: the per-identity cap spans all stream methods.
  const streams = new StreamGuard({ maxPerIdentity: opts.config.streams.perIdentity });
  const clients: GrpcClient<DescService>[] = [];
  const placements: ChatPlacement[] = [];
  // One table for everything the edge serves (the public services, reflection, health): an
  // override naming any of them is valid, one naming nothing served is a ConfigError.
  const limits = createMessageLimits(
    [...opts.upstreams.filter((u) => u.module.public).map((u) => u.module.desc), ServerReflectionV1, ServerReflectionV1Alpha, Health],
    opts.config.gateway.maxMessageBytes,
    opts.config.gateway.methodMaxBytes,
  );
  /** Chat's Subscribe, Session and unary calls without connect-node (subscribe-door.ts, session-door.ts, unary-door.ts). */
  const liveDoors: HttpDoor[] = [];
  const mounted: MountedService[] = [];
  const probes: PartProbe[] = [engineProbe(opts.engine, opts.log)];
  for (const { module, address } of opts.upstreams) {
    const health = createGrpcClient(Health, address, { defaultTimeoutMs: UPSTREAM_HEALTH_TIMEOUT_MS });
    clients.push(health as unknown as GrpcClient<DescService>);
    probes.push(upstreamProbe(module.name, module.desc.typeName, address, health, opts.log));
    if (!module.public) continue;
    let upstream: AnyUpstreamClient;
    if (module.name === "chat") {
      // Chat runs as several servers found through the registry; each call is placed on one.
      const placement = new ChatPlacement({
        desc: module.desc,
        coordinator: opts.engine.coordinator,
        path: chatServersPath(opts.config.cassandra.keyspace),
        fallbackAddress: address,
        log: opts.log.child({ component: "chat-placement" }),
        registry: opts.metrics.registry,
        relay: { keepAliveMs: opts.config.chat.keepAliveMs, outboxEvents: opts.config.chat.outboxEvents },
      });
      placements.push(placement);
      probes.push(chatServersProbe(placement, module.desc.typeName, opts.log));
      upstream = placement.upstream();
      const subscribe = module.desc.methods.find((m) => m.name === "Subscribe");
      if (subscribe && module.desc.typeName === ChatService.typeName) {
        liveDoors.push(
          subscribeDoor({
            admission: auth.admission,
            contextValues: auth.contextValues,
            streams,
            readMaxBytes: limits.readMaxBytes(module.desc, subscribe),
            assertionFor: (identity) => identityAssertionHeaders(meshKey, identity, SUBSCRIBE_PATH),
            open: (input, options) => placement.openSubscribe(input, options),
          }),
        );
      }
      const session = module.desc.methods.find((m) => m.name === "Session");
      if (session && module.desc.typeName === ChatService.typeName) {
        liveDoors.push(
          sessionDoor({
            admission: auth.admission,
            contextValues: auth.contextValues,
            streams,
            readMaxBytes: limits.readMaxBytes(module.desc, session),
            assertionFor: (identity) => identityAssertionHeaders(meshKey, identity, SESSION_PATH),
            open: (headers, closed) => placement.openRaw(SESSION_PATH, headers, closed),
          }),
        );
      }
      // Chat's unary calls (SendMessage above all) over gRPC and gRPC-web, without connect-node.
      liveDoors.push(
        unaryDoor({
          desc: module.desc,
          upstream,
          service: module.name,
          internalMethods: module.internalMethods ?? [],
          admission: auth.admission,
          contextValues: auth.contextValues,
          limits,
          assertionFor: (identity, path) => identityAssertionHeaders(meshKey, identity, path),
        }),
      );
    } else {
      const client = createGrpcClient(module.desc, address);
      clients.push(client);
      upstream = client as unknown as AnyUpstreamClient;
    }
    const impl = forwardingImpl(module.desc, upstream, auth.headersFor, { streams, service: module.name });
    for (const name of module.internalMethods ?? []) blockMethod(impl, module.desc, name);
    if (module.desc.typeName === ShortenerService.typeName) {
      limitBulkCreateOf(impl, auth.limiter);
      fillShortUrls(impl, opts.config.gateway.publicBaseUrl);
    }
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
        identityHeaders: auth.identityHeaders,
        limiter: auth.limiter,
        trustProxyHops: auth.settings.rateLimit.trustProxyHops,
        publicBaseUrl: opts.config.gateway.publicBaseUrl,
      }),
    );
  }
  const publicDescs = mounted.map((m) => m.desc);
  // Reflection describes what the edge serves: internal-only methods and the message types
  // only they or the mesh's events use are cut from the descriptors it hands out.
  const reflection = createReflection(
    servedContracts(opts.upstreams.filter((u) => u.module.public).map((u) => ({ desc: u.module.desc, internalMethods: u.module.internalMethods ?? [] }))),
  );
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
          ...(opts.config.gateway.countryHeader ? { countryHeader: opts.config.gateway.countryHeader } : {}),
        });
  const doors: HttpDoor[] = [...liveDoors, ...restDoors, ...(opts.doors ?? [])];
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
    limits,
    admission: auth.admission,
    interceptors: [auth.interceptor],
    contextValues: auth.contextValues,
    metricsOnPublicPort: opts.config.metrics.onPublicPort,
    transportLimits: opts.config.gateway.limits,
    ...(opts.config.gateway.tls ? { tls: opts.config.gateway.tls } : {}),
  });
  return {
    ...gateway,
    publicServices: publicDescs.map((d) => d.typeName),
    ...(redirects ? { redirects } : {}),
    async close(graceMs) {
      ownHealth.shutdown();
      // Long streams never end by themselves: tell them to reconnect, spread over part of the grace.
      await streams.drain(Math.min(opts.config.chat.drainWindowMs, graceMs / 2));
      await gateway.close(graceMs);
      await redirects?.close();
      for (const c of clients) c.close();
      for (const p of placements) p.close();
    },
  };
}

/** BulkCreateLinks charged per item against the creation limits (gateway/bulk-create-limit.ts). */
function limitBulkCreateOf(impl: ServiceImpl<DescService>, limiter: CreateRateLimiter): void {
  const shortener = impl as unknown as { bulkCreateLinks: Parameters<typeof limitBulkCreate>[0] };
  shortener.bulkCreateLinks = limitBulkCreate(shortener.bulkCreateLinks, limiter);
}

function blockMethod(impl: ServiceImpl<DescService>, desc: DescService, name: string): void {
  const method = desc.methods.find((m) => m.name === name);
  if (!method) throw new Error(`${desc.typeName} has no method ${name} to keep internal`);
  (impl as Record<string, unknown>)[method.localName] = () => {
    throw new ConnectError(`${desc.typeName}/${name} is internal and not served by the gateway`, Code.Unimplemented);
  };
}

/** Logs a part's state on each change, with the detail /readyz leaves out (addresses, driver text). */
function changeLog(log: Logger, part: Record<string, string>): (ok: boolean, why: string) => void {
  let last: boolean | undefined;
  return (ok, why) => {
    if (ok === last) return;
    last = ok;
    if (ok) log.info(part, "readiness: up");
    else log.warn({ ...part, why }, "readiness: down");
  };
}

/** The gateway's own engine: each backend a check, critical when the redirect door needs it. */
function engineProbe(engine: Engine, log: Logger): PartProbe {
  const logs = new Map<string, (ok: boolean, why: string) => void>();
  return {
    async run() {
      const r = await engine.readiness();
      return r.checks.map((c): Check => {
        let logChange = logs.get(c.name);
        if (!logChange) logs.set(c.name, (logChange = changeLog(log, { backend: c.name })));
        logChange(c.ok, c.detail);
        // A check that is not one backend (the memory engine's) stands for the whole engine.
        const critical = !isBackend(c.name) || GATEWAY_NEEDS.includes(c.name);
        return { name: c.name, kind: "backend", critical, ok: c.ok, detail: c.ok ? "up" : "down" };
      });
    },
    failed: (detail) => [{ name: "engine", kind: "backend", critical: true, ok: false, detail }],
  };
}

/**
 * /readyz is public: its checks name a service and its state only. The address and the grpc-js
 * error text (which names hosts and ports) go to the log, once per change of state.
 */
function upstreamProbe(
  name: string,
  typeName: string,
  address: string,
  health: GrpcClient<typeof Health>,
  log: Logger,
): PartProbe {
  const logChange = changeLog(log, { upstream: name, address });
  // No upstream is needed to serve redirects: a service down degrades the gateway, never drains it.
  const check = (ok: boolean, detail: string): Check => ({ name, kind: "service", critical: false, ok, detail });
  return {
    async run() {
      try {
        const res = await health.check(create(HealthCheckRequestSchema, { service: typeName }));
        const ok = res.status === HealthCheckResponse_ServingStatus.SERVING;
        const status = HealthCheckResponse_ServingStatus[res.status] ?? String(res.status);
        logChange(ok, status);
        return [check(ok, ok ? "serving" : status.toLowerCase())];
      } catch (e) {
        logChange(false, e instanceof Error ? e.message : String(e));
        return [check(false, "unavailable")];
      }
    },
    failed: (detail) => [check(false, detail)],
  };
}

/**
 * Every chat server in the registry, by id and state ("serving", "draining", "unavailable"): one
 * check each, so /readyz shows the whole chat tier. Ids name no host (services/chat/cluster/registry.ts).
 * With none registered, the registry adds nothing (the configured chat upstream has its own check).
 */
function chatServersProbe(placement: ChatPlacement, typeName: string, log: Logger): PartProbe {
  const health = new Map<string, GrpcClient<typeof Health>>();
  const logs = new Map<string, (ok: boolean, why: string) => void>();
  return {
    async run() {
      const servers = placement.registered;
      for (const [address, c] of health) {
        if (servers.some((s) => s.address === address)) continue;
        c.close();
        health.delete(address);
      }
      return Promise.all(
        servers.map(async (s): Promise<Check> => {
          let client = health.get(s.address);
          if (!client) health.set(s.address, (client = createGrpcClient(Health, s.address, { defaultTimeoutMs: UPSTREAM_HEALTH_TIMEOUT_MS })));
          let logChange = logs.get(s.id);
          if (!logChange) logs.set(s.id, (logChange = changeLog(log, { chatServer: s.id, address: s.address })));
          const check = (ok: boolean, detail: string): Check => ({ name: `chat/${s.id}`, kind: "service", critical: false, ok, detail });
          try {
            const res = await client.check(create(HealthCheckRequestSchema, { service: typeName }));
            const serving = res.status === HealthCheckResponse_ServingStatus.SERVING;
            logChange(serving || s.draining, String(res.status));
            if (s.draining) return check(true, `draining, ${s.streams} streams`);
            return check(serving, serving ? `serving, ${s.streams} streams` : "not serving");
          } catch (e) {
            logChange(false, e instanceof Error ? e.message : String(e));
            return check(false, "unavailable");
          }
        }),
      );
    },
    failed: (detail) => placement.registered.map((s) => ({ name: `chat/${s.id}`, kind: "service" as const, critical: false, ok: false, detail })),
  };
}
