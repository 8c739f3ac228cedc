/**
 * What every service hands the composition root: its contract, whether the gateway exposes
 * it, and a factory that builds its handlers from the engine. The same module runs alone in
 * its own process (cluster) or beside all the others in one process (memory).
 */
import type { DescService } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { Config, ServiceName } from "../platform/config.js";
import type { Engine } from "../platform/engine.js";

export interface ServiceDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly engine: Engine;
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
  close?(): Promise<void>;
}

export interface ServiceModule {
  readonly name: ServiceName;
  readonly desc: DescService;
  /** Served through the gateway; internal services are reachable only inside the mesh. */
  readonly public: boolean;
  /** Methods of a public service the gateway must never forward (internal-only calls). */
  readonly internalMethods?: readonly string[];
  create(deps: ServiceDeps): Promise<RunningService>;
}
