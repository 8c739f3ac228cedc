/**
 * What every service hands the composition root: its contract, whether the gateway exposes
 * it, and a factory that builds its handlers from the engine. The same module runs alone in
 * its own process (cluster) or beside all the others in one process (memory).
 */
import type { DescService } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Config, ServiceName } from "../platform/config.js";
import type { Backend, Engine } from "../platform/engine.js";

export type ServiceNeed = Backend | ServiceName;

export interface ServiceDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly engine: Engine;
  /** The process's Prometheus registry, for the service's own metrics (absent in some tests). */
  readonly registry?: Registry;
  /**
   * "host:port" at which another internal service is reached from this process (embedded: the
   * loopback port of a service started earlier; alone: its configured upstream address). Throws
   * for a service that cannot be reached from here yet.
   */
  readonly upstreamAddress: (name: ServiceName) => string;
}

/** For tests and tools that build one module without a mesh around it. */
export const noUpstreams = (name: ServiceName): string => {
  throw new Error(`no upstream address for service ${name} in this process`);
};

export interface RunningService {
  /** A Connect-style ServiceImpl (possibly partial: missing methods answer Unimplemented). */
  readonly impl: object;
  /** Once its gRPC server listens: the "host:port" other processes reach it at. */
  listening?(address: string): Promise<void> | void;
  /**
   * First step of a shutdown, before in-flight calls are waited for: stop taking new long-lived
   * work and end the streams held (the grace period would otherwise be spent waiting on them).
   */
  drain?(graceMs: number): Promise<void>;
  close?(): Promise<void>;
}

export interface ServiceModule {
  readonly name: ServiceName;
  readonly desc: DescService;
  /** Served through the gateway; internal services are reachable only inside the mesh. */
  readonly public: boolean;
  /** Methods of a public service the gateway must never forward (internal-only calls). */
  readonly internalMethods?: readonly string[];
  /**
   * What the service cannot answer without: backends (by engine readiness check name) and
   * upstream services it calls. It is NOT_SERVING while one of these is down and SERVING
   * otherwise; a backend it only uses as a cache or best-effort channel is not listed. Absent =
   * needs nothing (stubs).
   */
  readonly needs?: readonly ServiceNeed[];
  create(deps: ServiceDeps): Promise<RunningService>;
}
