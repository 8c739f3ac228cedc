/**
 * Per-method RPC metrics for the grpc-js adapter: label sets and prom-client children are built
 * once per method (and per status code on first use), so counting a call allocates no label
 * objects. Series and label values are the same as `metricsInterceptor` produces.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import type { Metrics } from "../metrics.js";
import { grpcCodeName } from "./status.js";

export interface MethodMetrics {
  /** Counts the call as started; returns the start time to pass to `handled`. */
  started(): number;
  /** Counts the call as handled with `code` and observes its latency since `startedAt`. */
  handled(code: number, startedAt: number): void;
}

type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

const TYPES: Record<DescMethod["methodKind"], GrpcType> = {
  unary: "unary",
  client_streaming: "client_stream",
  server_streaming: "server_stream",
  bidi_streaming: "bidi_stream",
};

export function grpcType(requestStream: boolean, responseStream: boolean): GrpcType {
  return requestStream ? (responseStream ? "bidi_stream" : "client_stream") : responseStream ? "server_stream" : "unary";
}

export function methodMetrics(metrics: Metrics, serviceTypeName: string, method: DescMethod): MethodMetrics {
  return labelledMetrics(metrics, serviceTypeName, method.name, TYPES[method.methodKind]);
}

export function labelledMetrics(metrics: Metrics, service: string, methodName: string, type: GrpcType): MethodMetrics {
  const labels = { grpc_service: service, grpc_method: methodName, grpc_type: type };
  const started = metrics.rpcStarted.labels(labels);
  interface ByCode {
    readonly handled: { inc(): void };
    readonly latency: { observe(v: number): void };
  }
  const byCode: (ByCode | undefined)[] = [];
  const forCode = (code: number): ByCode => {
    const withCode = { ...labels, grpc_code: grpcCodeName(code) };
    const c: ByCode = { handled: metrics.rpcHandled.labels(withCode), latency: metrics.rpcLatency.labels(withCode) };
    if (Number.isInteger(code) && code >= 0 && code < 64) byCode[code] = c;
    return c;
  };
  return {
    started() {
      started.inc();
      return performance.now();
    },
    handled(code, startedAt) {
      const c = byCode[code] ?? forCode(code);
      c.handled.inc();
      c.latency.observe((performance.now() - startedAt) / 1000);
    },
  };
}
