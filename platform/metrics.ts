/**
 * Prometheus metrics: one Registry per process (no global default registry, so tests and
 * several servers in one process never collide). `registry.metrics()` gives the text format.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type RpcLabel = "grpc_service" | "grpc_method" | "grpc_type" | "grpc_code";

export interface Metrics {
  readonly registry: Registry;
  /** Calls started, by service/method/type. */
  readonly rpcStarted: Counter<Exclude<RpcLabel, "grpc_code">>;
  /** Calls finished, by service/method/type and status code name ("OK", "NOT_FOUND", ...). */
  readonly rpcHandled: Counter<RpcLabel>;
  /** Time from call start to status, in seconds, by service/method/type/code. */
  readonly rpcLatency: Histogram<RpcLabel>;
}

export interface MetricsInit {
  /** Collect Node process metrics (CPU, memory, event-loop lag, GC). Default true. */
  readonly defaultMetrics?: boolean;
  /** Labels added to every series, e.g. { service: "shortener" }. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** Latency buckets in seconds: 0.25 ms .. 10 s, dense where internal hops live. */
export const RPC_LATENCY_BUCKETS = [
  0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export function createMetrics(init: MetricsInit = {}): Metrics {
  const registry = new Registry();
  if (init.labels) registry.setDefaultLabels({ ...init.labels });
  if (init.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const rpcStarted = new Counter({
    name: "grpc_server_started_total",
    help: "RPCs started on the server.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"] as const,
    registers: [registry],
  });
  const rpcHandled = new Counter({
    name: "grpc_server_handled_total",
    help: "RPCs completed on the server, regardless of success or failure.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code"] as const,
    registers: [registry],
  });
  const rpcLatency = new Histogram({
    name: "grpc_server_handling_seconds",
    help: "Response latency of RPCs handled by the server, in seconds.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code"] as const,
    buckets: RPC_LATENCY_BUCKETS,
    registers: [registry],
  });
  return { registry, rpcStarted, rpcHandled, rpcLatency };
}

/**
 * Metrics a component registers once per registry however often it is built on that registry: a
 * module restarted inside one process must not register the same names twice (prom-client throws).
 */
export function perRegistry<T>(build: (registers: Registry[]) => T): (registry: Registry) => T {
  const built = new WeakMap<Registry, T>();
  return (registry) => {
    let metrics = built.get(registry);
    if (metrics === undefined) built.set(registry, (metrics = build([registry])));
    return metrics;
  };
}
