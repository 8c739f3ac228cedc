/**
 * Typed configuration from the environment. Every variable is validated at start; a bad one
 * stops the process with one line naming the variable (ConfigError), so a typo never turns
 * into a confusing connection error minutes later.
 */
export type EngineKind = "memory" | "cluster";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export const SERVICE_NAMES = ["tokenrange", "shortener", "redirect", "chat", "presence", "push"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface Config {
  readonly engine: EngineKind;
  readonly logLevel: LogLevel;
  /** The public edge: one port for HTTP/1.1 and h2c. */
  readonly gateway: {
    readonly host: string;
    readonly port: number;
    /** Origins allowed by CORS; ["*"] allows any. */
    readonly corsOrigins: readonly string[];
    /** Base URL used in short links and printed at start, e.g. http://localhost:8080 */
    readonly publicBaseUrl: string;
    /** Transport limits of the public port (gateway/transport-limits.ts says what each bounds). */
    readonly limits: GatewayLimits;
  };
  /** Where this process serves its internal gRPC service (one service per process in cluster mode). */
  readonly grpc: HostPort;
  /** Where the gateway and other services reach each internal service in cluster mode. */
  readonly upstreams: Readonly<Record<ServiceName, HostPort>>;
  readonly cassandra: {
    readonly contactPoints: readonly HostPort[];
    readonly localDataCenter: string;
    readonly keyspace: string;
    readonly replicationFactor: number;
    /** Keyspace DDL differs: ScyllaDB needs tablets disabled for LWT/counters, Cassandra rejects that clause. */
    readonly flavor: "cassandra" | "scylla";
  };
  readonly zookeeper: { readonly connectString: string; readonly sessionTimeoutMs: number };
  readonly nats: { readonly servers: readonly string[] };
  readonly redis: { readonly url: string };
  /** How long graceful shutdown may drain in-flight calls before closing them. */
  readonly shutdownGraceMs: number;
  /** SWITCHBOARD_CODE_KEY as given (validated by the token-range code-key loader). */
  readonly codeKey: string | undefined;
}

export interface GatewayLimits {
  readonly firstBytesTimeoutMs: number;
  readonly h2IdleTimeoutMs: number;
  readonly h2MaxStreamsPerConnection: number;
  readonly h2MaxSessionMemoryMb: number;
  readonly maxHeaderBytes: number;
  readonly maxConnections: number;
  /** 0 = no per-address limit (e.g. behind a proxy, where every connection has its address). */
  readonly maxConnectionsPerAddress: number;
  readonly maxStreams: number;
  /** 0 = no per-address limit. */
  readonly maxStreamsPerAddress: number;
  readonly http1HeadersTimeoutMs: number;
  readonly http1RequestTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(`invalid configuration: ${variable} ${reason}`);
    this.name = "ConfigError";
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const DEFAULT_GRPC_PORTS: Readonly<Record<ServiceName, number>> = {
  tokenrange: 50051,
  shortener: 50052,
  redirect: 50053,
  chat: 50054,
  presence: 50055,
  push: 50056,
};

export function loadConfig(env: Env = process.env): Config {
  const read = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const v = read(name);
    if (v === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(name, `must be one of ${allowed.join(", ")} (got "${v}")`);
    }
    return v as T;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const v = read(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v)) throw new ConfigError(name, `must be a whole number (got "${v}")`);
    const n = Number(v);
    if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max} (got ${n})`);
    return n;
  };
  const hostPort = (name: string, fallback: string, defaultPort?: number): HostPort =>
    parseHostPort(name, read(name) ?? fallback, defaultPort);
  const hostPortList = (name: string, fallback: string, defaultPort: number): HostPort[] => {
    const raw = read(name) ?? fallback;
    const items = raw.split(",").map((s) => s.trim());
    if (items.some((s) => s === "")) throw new ConfigError(name, `has an empty entry (got "${raw}")`);
    return items.map((item) => parseHostPort(name, item, defaultPort));
  };
  const urlList = (name: string, fallback: string, schemes: readonly string[]): string[] => {
    const raw = read(name) ?? fallback;
    return raw.split(",").map((s) => {
      const item = s.trim();
      let u: URL;
      try {
        u = new URL(item);
      } catch {
        throw new ConfigError(name, `must be a URL like ${schemes[0]}//host:port (got "${item}")`);
      }
      if (!schemes.includes(u.protocol) || u.hostname === "") {
        throw new ConfigError(name, `must use ${schemes.join(" or ")} with a host (got "${item}")`);
      }
      return item;
    });
  };

  const gatewayPort = int("SWITCHBOARD_GATEWAY_PORT", 8080, 0, 65535);
  const gatewayHost = read("SWITCHBOARD_GATEWAY_HOST") ?? "127.0.0.1";
  const upstreams = Object.fromEntries(
    SERVICE_NAMES.map((s) => {
      const name = `SWITCHBOARD_UPSTREAM_${s.toUpperCase()}`;
      return [s, hostPort(name, `127.0.0.1:${DEFAULT_GRPC_PORTS[s]}`)];
    }),
  ) as Record<ServiceName, HostPort>;
  const keyspace = read("SWITCHBOARD_CASSANDRA_KEYSPACE") ?? "switchboard";
  if (!/^[a-z][a-z0-9_]{0,47}$/.test(keyspace)) {
    throw new ConfigError(
      "SWITCHBOARD_CASSANDRA_KEYSPACE",
      `must be lower-case letters, digits and _ starting with a letter, at most 48 chars (got "${keyspace}")`,
    );
  }
  const http1HeadersTimeoutMs = int("SWITCHBOARD_GATEWAY_HTTP1_HEADERS_TIMEOUT_MS", 30_000, 100, 600_000);
  const http1RequestTimeoutMs = int("SWITCHBOARD_GATEWAY_HTTP1_REQUEST_TIMEOUT_MS", 120_000, 100, 3_600_000);
  if (http1HeadersTimeoutMs > http1RequestTimeoutMs) {
    throw new ConfigError(
      "SWITCHBOARD_GATEWAY_HTTP1_HEADERS_TIMEOUT_MS",
      `must not exceed SWITCHBOARD_GATEWAY_HTTP1_REQUEST_TIMEOUT_MS (${http1RequestTimeoutMs}; got ${http1HeadersTimeoutMs})`,
    );
  }
  const publicBaseUrl = read("SWITCHBOARD_PUBLIC_BASE_URL") ?? `http://localhost:${gatewayPort}`;
  urlList("SWITCHBOARD_PUBLIC_BASE_URL", publicBaseUrl, ["http:", "https:"]);

  return {
    engine: oneOf<EngineKind>("SWITCHBOARD_ENGINE", ["memory", "cluster"], "memory"),
    logLevel: oneOf<LogLevel>(
      "SWITCHBOARD_LOG_LEVEL",
      ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
      "info",
    ),
    gateway: {
      host: gatewayHost,
      port: gatewayPort,
      corsOrigins: (read("SWITCHBOARD_CORS_ORIGINS") ?? "*").split(",").map((s) => s.trim()),
      publicBaseUrl: publicBaseUrl.replace(/\/+$/, ""),
      limits: {
        firstBytesTimeoutMs: int("SWITCHBOARD_GATEWAY_FIRST_BYTES_TIMEOUT_MS", 10_000, 100, 600_000),
        h2IdleTimeoutMs: int("SWITCHBOARD_GATEWAY_H2_IDLE_TIMEOUT_MS", 120_000, 100, 86_400_000),
        h2MaxStreamsPerConnection: int("SWITCHBOARD_GATEWAY_H2_MAX_STREAMS_PER_CONNECTION", 100, 1, 10_000),
        h2MaxSessionMemoryMb: int("SWITCHBOARD_GATEWAY_H2_MAX_SESSION_MEMORY_MB", 4, 1, 1_024),
        maxHeaderBytes: int("SWITCHBOARD_GATEWAY_MAX_HEADER_BYTES", 16_384, 1_024, 1_048_576),
        maxConnections: int("SWITCHBOARD_GATEWAY_MAX_CONNECTIONS", 20_000, 1, 1_000_000),
        maxConnectionsPerAddress: int("SWITCHBOARD_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS", 256, 0, 1_000_000),
        maxStreams: int("SWITCHBOARD_GATEWAY_MAX_STREAMS", 30_000, 1, 10_000_000),
        maxStreamsPerAddress: int("SWITCHBOARD_GATEWAY_MAX_STREAMS_PER_ADDRESS", 2_000, 0, 10_000_000),
        http1HeadersTimeoutMs,
        http1RequestTimeoutMs,
      },
    },
    grpc: {
      host: read("SWITCHBOARD_GRPC_HOST") ?? "127.0.0.1",
      port: int("SWITCHBOARD_GRPC_PORT", 0, 0, 65535),
    },
    upstreams,
    cassandra: {
      contactPoints: hostPortList("SWITCHBOARD_CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042", 9042),
      localDataCenter: read("SWITCHBOARD_CASSANDRA_LOCAL_DC") ?? "datacenter1",
      keyspace,
      replicationFactor: int("SWITCHBOARD_CASSANDRA_REPLICATION_FACTOR", 1, 1, 9),
      flavor: oneOf("SWITCHBOARD_CASSANDRA_FLAVOR", ["cassandra", "scylla"], "cassandra"),
    },
    zookeeper: {
      connectString: hostPortList("SWITCHBOARD_ZOOKEEPER_CONNECT", "127.0.0.1:2181", 2181)
        .map((hp) => `${hp.host}:${hp.port}`)
        .join(","),
      sessionTimeoutMs: int("SWITCHBOARD_ZOOKEEPER_SESSION_TIMEOUT_MS", 10_000, 1_000, 120_000),
    },
    nats: { servers: urlList("SWITCHBOARD_NATS_URL", "nats://127.0.0.1:4222", ["nats:", "tls:"]) },
    redis: { url: urlList("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"])[0]! },
    shutdownGraceMs: int("SWITCHBOARD_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    codeKey: read("SWITCHBOARD_CODE_KEY"),
  };
}

function parseHostPort(variable: string, raw: string, defaultPort?: number): HostPort {
  // host, host:port, [v6]:port
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(raw);
  if (!m) {
    throw new ConfigError(variable, `must be host:port entries separated by commas (got "${raw}")`);
  }
  const host = (m[1] ?? m[2])!;
  const portText = m[3];
  if (portText === undefined && defaultPort === undefined) {
    throw new ConfigError(variable, `needs a port, as host:port (got "${raw}")`);
  }
  const port = portText === undefined ? defaultPort! : Number(portText);
  if (port < 1 || port > 65535) throw new ConfigError(variable, `has port ${port} outside 1-65535 (got "${raw}")`);
  return { host, port };
}

/** The env vars that point a process at an upstream service in cluster mode. */
export function upstreamVariable(service: ServiceName): string {
  return `SWITCHBOARD_UPSTREAM_${service.toUpperCase()}`;
}
