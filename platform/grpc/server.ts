/**
 * Internal gRPC server bootstrap on @grpc/grpc-js.
 *
 * `startGrpcServer` mounts the given transport-neutral services (via toGrpcHandlers) plus
 * grpc.health.v1 and reflection v1/v1alpha, counts calls in the handlers when `metrics` is
 * given (no grpc-js interceptor: one per call costs ~20% of a small hop), binds h2c on host:port (0 = a free port) and returns a handle whose `shutdown(graceMs)`
 * marks health NOT_SERVING, drains in-flight calls (tryShutdown), forces the rest after
 * graceMs, then runs the registered closers in reverse registration order.
 */
import { setMaxListeners } from "node:events";
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  Server,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptor,
  type ServerOptions,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import { HealthService, Health } from "./health.js";
import { createReflection, ServerReflectionV1, ServerReflectionV1Alpha } from "./reflection.js";
import { grpcServiceDefinition, toGrpcHandlers, type GrpcHandlerOptions } from "./service-definition.js";
import { grpcType, labelledMetrics, type MethodMetrics } from "./call-metrics.js";
import { MESH_MAX_MESSAGE_BYTES } from "./message-limits.js";
import { LocalServer } from "./in-process.js";

/** One service to mount. Build it with `grpcService(desc, impl)` to have `impl` type-checked. */
export interface GrpcServiceRegistration {
  readonly desc: DescService;
  readonly impl: object;
}

/** A registration whose impl is checked against the descriptor. */
export function grpcService<S extends DescService>(desc: S, impl: Partial<ServiceImpl<S>>): GrpcServiceRegistration {
  return { desc, impl };
}

export interface StartGrpcServerOptions {
  readonly services: readonly GrpcServiceRegistration[];
  /** Default 127.0.0.1. Use 0.0.0.0 in containers. */
  readonly host?: string;
  /** 0 = any free port (see the returned `port`). */
  readonly port: number;
  readonly log: Logger;
  /**
   * When given, every call reaching a handler is counted and timed on this registry (calls that
   * grpc-js rejects before any handler runs, e.g. an undecodable request, are not; add
   * `metricsInterceptor(metrics)` to serverOptions.interceptors instead if you need those).
   */
  readonly metrics?: Metrics;
  /**
   * Seeds ctx.values per call. Services pass `verifiedIdentity(meshKey)` (./verified-identity.ts):
   * without it no call has a caller, so every requireCaller method answers Unauthenticated.
   */
  readonly contextValues?: GrpcHandlerOptions["contextValues"];
  /** grpc-js server options, merged over DEFAULT_SERVER_OPTIONS. */
  readonly serverOptions?: ServerOptions;
  /**
   * Also serve callers of this same process without the network (./in-process.ts): their
   * unary and server-streaming calls to this server's address skip grpc-js. For the embedded
   * mesh; the server listens on its port for everyone else all the same.
   */
  readonly inProcess?: boolean;
}

export interface RunningGrpcServer {
  readonly port: number;
  readonly health: HealthService;
  readonly server: Server;
  /** Registers a closer run after the server stopped (reverse registration order). */
  onClose(name: string, close: () => Promise<void> | void): void;
  /** Runs at the start of shutdown, after health turns NOT_SERVING and before in-flight calls are waited for. */
  onDrain(name: string, drain: (graceMs: number) => Promise<void> | void): void;
  /** Graceful stop; idempotent (later calls return the same promise). */
  shutdown(graceMs: number): Promise<void>;
}

/** Keep-alive pings every 60 s (timeout 20 s); messages up to MESH_MAX_MESSAGE_BYTES. */
export const DEFAULT_SERVER_OPTIONS: ServerOptions = {
  "grpc.keepalive_time_ms": 60_000,
  "grpc.keepalive_timeout_ms": 20_000,
  "grpc.max_receive_message_length": MESH_MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MESH_MAX_MESSAGE_BYTES,
};

export async function startGrpcServer(options: StartGrpcServerOptions): Promise<RunningGrpcServer> {
  const { log } = options;
  const host = options.host ?? "127.0.0.1";
  const server = new Server({ ...DEFAULT_SERVER_OPTIONS, ...options.serverOptions });

  const hardStop = new AbortController();
  // Every call in flight listens to it (and stops listening when it ends): thousands of streams
  // are normal here, not a leak.
  setMaxListeners(0, hardStop.signal);
  const handlerOptions: GrpcHandlerOptions = {
    log,
    shutdownSignal: hardStop.signal,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.contextValues ? { contextValues: options.contextValues } : {}),
  };
  const health = new HealthService(options.services.map((s) => s.desc.typeName));
  const reflection = createReflection(options.services.map((s) => s.desc));
  const all: GrpcServiceRegistration[] = [
    ...options.services,
    grpcService(Health, health),
    grpcService(ServerReflectionV1, reflection.v1),
    grpcService(ServerReflectionV1Alpha, reflection.v1alpha),
  ];
  const local = options.inProcess ? new LocalServer(host) : undefined;
  const mounted = new Set<string>();
  for (const { desc, impl } of all) {
    if (mounted.has(desc.typeName)) continue;
    mounted.add(desc.typeName);
    const handlers = toGrpcHandlers(desc, impl as Partial<ServiceImpl<DescService>>, handlerOptions);
    server.addService(grpcServiceDefinition(desc), handlers);
    local?.add(desc, handlers);
  }

  const port = await new Promise<number>((resolve, reject) => {
    const address = host.includes(":") && !host.startsWith("[") ? `[${host}]:${options.port}` : `${host}:${options.port}`;
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  local?.listen(port);
  log.info({ host, port, services: [...mounted], inProcess: local !== undefined }, "grpc server listening");

  const closers: { name: string; close: () => Promise<void> | void }[] = [];
  const drainers: { name: string; drain: (graceMs: number) => Promise<void> | void }[] = [];
  let stopping: Promise<void> | undefined;

  const shutdown = async (graceMs: number): Promise<void> => {
    local?.unlisten();
    health.shutdown();
    log.info({ graceMs }, "grpc server draining");
    for (const { name, drain } of drainers) {
      try {
        await drain(graceMs);
      } catch (err) {
        log.error({ err, drainer: name }, "drain failed");
      }
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        log.warn({ graceMs }, "grpc server grace period over; cancelling remaining calls");
        hardStop.abort();
        server.forceShutdown();
        local?.cancelAll();
        resolve();
      }, graceMs);
      timer.unref();
      const drained = new Promise<void>((done) => server.tryShutdown(() => done()));
      void Promise.all([drained, local?.idle()]).then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    for (const { name, close } of closers.reverse()) {
      try {
        await close();
        log.info({ closer: name }, "closed");
      } catch (err) {
        log.error({ err, closer: name }, "closer failed");
      }
    }
    log.info("grpc server stopped");
  };

  return {
    port,
    health,
    server,
    onClose(name, close) {
      closers.push({ name, close });
    },
    onDrain(name, drain) {
      drainers.push({ name, drain });
    },
    shutdown(graceMs) {
      stopping ??= shutdown(graceMs);
      return stopping;
    },
  };
}

/**
 * Counts and times every call as a grpc-js interceptor: started, handled by code, latency.
 * Not used by startGrpcServer (which counts in the handlers, much cheaper); it also sees calls
 * that fail before a handler runs. Do not combine both on one registry (double counting).
 */
export function metricsInterceptor(metrics: Metrics): ServerInterceptor {
  const byPath = new Map<string, MethodMetrics>();
  return (descriptor, call) => {
    let m = byPath.get(descriptor.path);
    if (!m) {
      const slash = descriptor.path.lastIndexOf("/");
      m = labelledMetrics(
        metrics,
        descriptor.path.slice(1, slash),
        descriptor.path.slice(slash + 1),
        grpcType(descriptor.requestStream, descriptor.responseStream),
      );
      byPath.set(descriptor.path, m);
    }
    const mm = m;
    const started = mm.started();
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      mm.handled(code, started);
    };
    return new ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => finish(1) }),
      sendStatus: (status, next) => {
        finish(status.code ?? 0);
        next(status);
      },
    });
  };
}
