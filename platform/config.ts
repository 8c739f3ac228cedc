/**
 * Typed configuration from the environment. Every variable is validated at start; a bad one
 * stops the process with one line naming the variable (ConfigError), so a typo never turns
 * into a confusing connection error minutes later.
 */
import { hostname, networkInterfaces } from "node:os";
import { MIN_MESH_SECRET_BYTES } from "./identity-assertion.js";

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
    /**
     * Largest request message (after decompression; per message on streams) for methods without
     * their own entry in gateway/rpc-limits.ts, and per-method overrides ("pkg.Service/Method" -> bytes).
     */
    readonly maxMessageBytes: number;
    readonly methodMaxBytes: Readonly<Record<string, number>>;
    /** Transport limits of the public port (gateway/transport-limits.ts says what each bounds). */
    readonly limits: GatewayLimits;
    /** PEM files of the public port's certificate (chain) and key: the port then speaks TLS only. */
    readonly tls?: { readonly certFile: string; readonly keyFile: string };
    /** Lower-case name of the header a trusted proxy sets to the client's country (click events). */
    readonly countryHeader?: string;
  };
  /** Prometheus metrics: a listener of their own (port 0 = any free port), and optionally the public port too. */
  readonly metrics: {
    readonly host: string;
    readonly port: number;
    /** false = no metrics listener. */
    readonly listen: boolean;
    /** Also answer GET /metrics on the public gateway port (off by default: it is public). */
    readonly onPublicPort: boolean;
  };
  /** Where this process serves its internal gRPC service (one service per process in cluster mode). */
  readonly grpc: HostPort;
  /** Host other processes reach this service's gRPC port at (registered in the coordinator: chat servers). */
  readonly advertiseHost: string;
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
  /**
   * Embedded mesh: calls between the gateway and the services of the one process skip the
   * network (platform/grpc/in-process.ts). false = every hop over loopback gRPC, as split up.
   */
  readonly inProcessHop: boolean;
  /** Caps on long-lived streams (issue 8): they hold memory and fan-out work per identity. */
  readonly streams: {
    /** Gateway: concurrent streaming calls per identity, over every stream method. */
    readonly perIdentity: number;
    /** Redirect service: concurrent WatchClicks streams per caller (defence in depth behind the gateway's cap). */
    readonly watchClicksPerCaller: number;
  };
  /** The chat service (services/chat/README.md says what each bounds). */
  readonly chat: ChatConfig;
  /** The presence service (services/presence/README.md). */
  readonly presence: PresenceConfig;
  /** The push service's registry, targets and queue (services/push/README.md). */
  readonly push: PushConfig;
  /** SWITCHBOARD_CODE_KEY as given (validated by the token-range code-key loader). */
  readonly codeKey: string | undefined;
  /**
   * SWITCHBOARD_MESH_SECRET (>= 32 bytes when set): signs the identity the gateway passes to
   * internal services. Required by the serving roles on the cluster engine (platform/mesh-secret.ts).
   */
  readonly mesh: { readonly secret: string | undefined };
  /** Push provider credentials and endpoints (services/push/README.md, "Providers"). */
  readonly pushProviders: PushProvidersConfig;
}

/** Chat limits and timings (services/chat/README.md). */
export interface ChatConfig {
  /** Most members of a group channel, owner included. */
  readonly maxGroupMembers: number;
  /** Most channels (direct and group) one user may be a member of. */
  readonly maxChannelsPerUser: number;
  /**
   * Sync settle window: every message and change is persisted within this long of its id's time
   * (writers re-mint or re-announce otherwise), so Sync's cursor never moves past an id that may
   * still appear. Also the lag after which a live event is in Sync's settled region.
   */
  readonly settleWindowMs: number;
  /** Client-side timeout of each chat write to the database (must be well under the settle window). */
  readonly writeTimeoutMs: number;
  /** Idle live streams get a keep_alive event this often. */
  readonly keepAliveMs: number;
  /** Events queued for one live stream before it is ended as a slow consumer (told to Sync). */
  readonly outboxEvents: number;
  /** Frames of one Session handled at once (sends pipelined); further frames wait unread. */
  readonly sessionInFlight: number;
  /** Typing indicators per user per channel: at most this many per typingWindowMs. */
  readonly typingPerWindow: number;
  readonly typingWindowMs: number;
  /** Messages are kept this long (0 = forever). */
  readonly retentionDays: number;
  /** On shutdown, live streams are ended spread over this window (clients reconnect elsewhere, not all at once). */
  readonly drainWindowMs: number;
  /**
   * A channel's member list is read once per this long for sends, history and typing (forgotten
   * at once on a membership change; services/chat/member-lists.ts). 0 reads it every time.
   */
  readonly memberListMs: number;
}

/** Presence timings and limits (services/presence/README.md). */
export interface PresenceConfig {
  /** Clients heartbeat this often (told in every HeartbeatResponse). */
  readonly heartbeatIntervalMs: number;
  /** A device with no heartbeat for this long is offline. */
  readonly timeoutMs: number;
  /** A device that goes offline (going_offline, chat stream closed) and is back within this causes no transition. */
  readonly graceMs: number;
  /** After a user's transition, the next one is held back until this long after it (flap damping). */
  readonly minDwellMs: number;
  /** Groups up to this many members make their members contacts (fan-out); larger ones do not. */
  readonly fanoutMaxGroupMembers: number;
  /** A user's contacts are cached this long per presence process. */
  readonly contactsTtlMs: number;
  /** Concurrent WatchPresence streams per caller. */
  readonly watchesPerCaller: number;
}

/** Push registry limits, notification lifetimes and the target policy (services/push/README.md). */
export interface PushConfig {
  /** Devices one user may register. */
  readonly maxDevicesPerUser: number;
  /** A notification without expire_time is dropped this long after it was queued. */
  readonly defaultTtlMs: number;
  /** The furthest expire_time SendNotification accepts (the queue keeps requests at most 7 days). */
  readonly maxTtlMs: number;
  /** Hosts Web Push endpoints may be on: exact names or "*.suffix". */
  readonly webPushHosts: readonly string[];
  /** Hosts webhook targets may be on; empty = webhook devices are refused. */
  readonly webhookHosts: readonly string[];
  /** Let allowed hosts resolve to loopback/private addresses (tests with local endpoints only). */
  readonly allowPrivateTargets: boolean;
  /** Queued requests one push worker handles at once; 0 = this process runs no worker (API only). */
  readonly workerConcurrency: number;
  /** A request a worker took and did not settle within this long goes to another (a killed worker's). */
  readonly ackWaitMs: number;
  /** Retry backoff after a retryable provider answer: first delay up to this, doubling... */
  readonly retryBaseMs: number;
  /** ...to at most this (a longer Retry-After is capped too). */
  readonly retryMaxMs: number;
}

/** The well-known browser push services (Chrome/Edge via FCM, Firefox, Safari, legacy Edge/WNS). */
export const DEFAULT_WEB_PUSH_HOSTS: readonly string[] = [
  "fcm.googleapis.com",
  "updates.push.services.mozilla.com",
  "*.push.apple.com",
  "*.notify.windows.com",
];

/** Transport limits of the public port (gateway/transport-limits.ts enforces them). */
export interface GatewayLimits {
  /**
   * Absolute deadline from accept until a connection has told its protocol and, for HTTP/2,
   * sent its first request headers. Trickling bytes does not extend it.
   */
  readonly firstBytesTimeoutMs: number;
  /** An HTTP/2 session with no open stream for this long is closed (GOAWAY). Quiet open streams keep it. */
  readonly h2IdleTimeoutMs: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS announced on every HTTP/2 connection. */
  readonly h2MaxStreamsPerConnection: number;
  /** nghttp2's per-session memory budget (MB); beyond it new streams are refused. */
  readonly h2MaxSessionMemoryMb: number;
  /** Largest request header block (bytes), HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE and HTTP/1.1 alike. */
  readonly maxHeaderBytes: number;
  /** Open TCP connections in total (every protocol). */
  readonly maxConnections: number;
  /** Open TCP connections per remote address (IPv6 per /64); 0 = no per-address limit. */
  readonly maxConnectionsPerAddress: number;
  /** Open HTTP/2 streams in total, over all connections. */
  readonly maxStreams: number;
  /** Open HTTP/2 streams per remote address across its connections; 0 = no per-address limit. */
  readonly maxStreamsPerAddress: number;
  /** HTTP/1.1: longest a client may take to send a request's headers (408 then). */
  readonly http1HeadersTimeoutMs: number;
  /** HTTP/1.1: longest a client may take to send a whole request (408 then). */
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
  const bool = (name: string, fallback: boolean): boolean => {
    const v = read(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (v === "true" || v === "1" || v === "yes") return true;
    if (v === "false" || v === "0" || v === "no") return false;
    throw new ConfigError(name, `must be true or false (got "${v}")`);
  };
  const metricsPortText = read("SWITCHBOARD_METRICS_PORT");
  const metricsOff = metricsPortText?.toLowerCase() === "off";
  const http1HeadersTimeoutMs = int("SWITCHBOARD_GATEWAY_HTTP1_HEADERS_TIMEOUT_MS", 30_000, 100, 600_000);
  const http1RequestTimeoutMs = int("SWITCHBOARD_GATEWAY_HTTP1_REQUEST_TIMEOUT_MS", 120_000, 100, 3_600_000);
  if (http1HeadersTimeoutMs > http1RequestTimeoutMs) {
    throw new ConfigError(
      "SWITCHBOARD_GATEWAY_HTTP1_HEADERS_TIMEOUT_MS",
      `must not exceed SWITCHBOARD_GATEWAY_HTTP1_REQUEST_TIMEOUT_MS (${http1RequestTimeoutMs}; got ${http1HeadersTimeoutMs})`,
    );
  }
  const tlsCertFile = read("SWITCHBOARD_GATEWAY_TLS_CERT_FILE");
  const tlsKeyFile = read("SWITCHBOARD_GATEWAY_TLS_KEY_FILE");
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    const [missing, given] = tlsCertFile === undefined
      ? ["SWITCHBOARD_GATEWAY_TLS_CERT_FILE", "SWITCHBOARD_GATEWAY_TLS_KEY_FILE"]
      : ["SWITCHBOARD_GATEWAY_TLS_KEY_FILE", "SWITCHBOARD_GATEWAY_TLS_CERT_FILE"];
    throw new ConfigError(missing, `must be set too when ${given} is (both PEM files for TLS, or neither for cleartext)`);
  }
  const tls = tlsCertFile !== undefined && tlsKeyFile !== undefined ? { certFile: tlsCertFile, keyFile: tlsKeyFile } : undefined;
  const countryHeader = read("SWITCHBOARD_CLIENT_COUNTRY_HEADER")?.toLowerCase();
  if (countryHeader !== undefined && !/^[a-z0-9-]{1,64}$/.test(countryHeader)) {
    throw new ConfigError("SWITCHBOARD_CLIENT_COUNTRY_HEADER", `must be an HTTP header name like cf-ipcountry (got "${countryHeader}")`);
  }
  const publicBaseUrl = read("SWITCHBOARD_PUBLIC_BASE_URL") ?? `${tls ? "https" : "http"}://localhost:${gatewayPort}`;
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
      maxMessageBytes: int("SWITCHBOARD_GATEWAY_MAX_MESSAGE_BYTES", 16 * 1024, 64, MAX_GATEWAY_MESSAGE_BYTES),
      methodMaxBytes: methodSizes("SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES", read("SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES")),
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
      ...(tls ? { tls } : {}),
      ...(countryHeader ? { countryHeader } : {}),
    },
    metrics: {
      host: read("SWITCHBOARD_METRICS_HOST") ?? "127.0.0.1",
      port: metricsOff ? 0 : int("SWITCHBOARD_METRICS_PORT", 9464, 0, 65535),
      listen: !metricsOff,
      onPublicPort: bool("SWITCHBOARD_METRICS_ON_PUBLIC_PORT", false),
    },
    grpc: {
      host: read("SWITCHBOARD_GRPC_HOST") ?? "127.0.0.1",
      port: int("SWITCHBOARD_GRPC_PORT", 0, 0, 65535),
    },
    advertiseHost: advertiseHost(read("SWITCHBOARD_ADVERTISE_HOST"), read("SWITCHBOARD_GRPC_HOST") ?? "127.0.0.1"),
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
    inProcessHop: bool("SWITCHBOARD_IN_PROCESS_HOP", true),
    streams: {
      perIdentity: int("SWITCHBOARD_STREAMS_PER_IDENTITY", 16, 1, 100_000),
      watchClicksPerCaller: int("SWITCHBOARD_WATCH_CLICKS_PER_CALLER", 64, 1, 100_000),
    },
    chat: chatConfig(int),
    presence: presenceConfig(int),
    push: pushConfig(int, bool, read),
    codeKey: read("SWITCHBOARD_CODE_KEY"),
    mesh: { secret: meshSecret(env["SWITCHBOARD_MESH_SECRET"]) },
    pushProviders: pushProvidersConfig(read, int),
  };
}

function chatConfig(int: (name: string, fallback: number, min: number, max: number) => number): ChatConfig {
  const settleWindowMs = int("SWITCHBOARD_CHAT_SETTLE_WINDOW_MS", 5_000, 50, 600_000);
  const writeTimeoutMs = int("SWITCHBOARD_CHAT_WRITE_TIMEOUT_MS", 2_000, 10, 600_000);
  if (writeTimeoutMs * 2 > settleWindowMs) {
    throw new ConfigError(
      "SWITCHBOARD_CHAT_WRITE_TIMEOUT_MS",
      `must be at most half of SWITCHBOARD_CHAT_SETTLE_WINDOW_MS (${settleWindowMs}; got ${writeTimeoutMs})`,
    );
  }
  return {
    maxGroupMembers: int("SWITCHBOARD_CHAT_MAX_GROUP_MEMBERS", 100, 2, 10_000),
    maxChannelsPerUser: int("SWITCHBOARD_CHAT_MAX_CHANNELS_PER_USER", 1_000, 1, 100_000),
    settleWindowMs,
    writeTimeoutMs,
    keepAliveMs: int("SWITCHBOARD_CHAT_KEEPALIVE_MS", 25_000, 100, 55_000),
    outboxEvents: int("SWITCHBOARD_CHAT_OUTBOX_EVENTS", 1_000, 1, 1_000_000),
    sessionInFlight: int("SWITCHBOARD_CHAT_SESSION_IN_FLIGHT", 32, 1, 1_000),
    typingPerWindow: int("SWITCHBOARD_CHAT_TYPING_PER_WINDOW", 5, 1, 1_000),
    typingWindowMs: int("SWITCHBOARD_CHAT_TYPING_WINDOW_MS", 5_000, 100, 600_000),
    retentionDays: int("SWITCHBOARD_CHAT_RETENTION_DAYS", 0, 0, 36_500),
    drainWindowMs: int("SWITCHBOARD_CHAT_DRAIN_WINDOW_MS", 5_000, 0, 600_000),
    memberListMs: int("SWITCHBOARD_CHAT_MEMBER_LIST_MS", 1_000, 0, 60_000),
  };
}

function presenceConfig(int: (name: string, fallback: number, min: number, max: number) => number): PresenceConfig {
  const heartbeatIntervalMs = int("SWITCHBOARD_PRESENCE_HEARTBEAT_INTERVAL_MS", 10_000, 100, 600_000);
  const timeoutMs = int("SWITCHBOARD_PRESENCE_TIMEOUT_MS", 30_000, 200, 3_600_000);
  if (timeoutMs <= heartbeatIntervalMs) {
    throw new ConfigError(
      "SWITCHBOARD_PRESENCE_TIMEOUT_MS",
      `must be greater than SWITCHBOARD_PRESENCE_HEARTBEAT_INTERVAL_MS (${heartbeatIntervalMs}; got ${timeoutMs})`,
    );
  }
  const graceMs = int("SWITCHBOARD_PRESENCE_GRACE_MS", 5_000, 0, 600_000);
  const minDwellMs = int("SWITCHBOARD_PRESENCE_MIN_DWELL_MS", 10_000, 0, 600_000);
  if (minDwellMs > timeoutMs) {
    throw new ConfigError("SWITCHBOARD_PRESENCE_MIN_DWELL_MS", `must be at most SWITCHBOARD_PRESENCE_TIMEOUT_MS (${timeoutMs}; got ${minDwellMs})`);
  }
  return {
    heartbeatIntervalMs,
    timeoutMs,
    graceMs,
    minDwellMs,
    fanoutMaxGroupMembers: int("SWITCHBOARD_PRESENCE_FANOUT_MAX_GROUP_MEMBERS", 100, 2, 10_000),
    contactsTtlMs: int("SWITCHBOARD_PRESENCE_CONTACTS_TTL_MS", 10_000, 1, 600_000),
    watchesPerCaller: int("SWITCHBOARD_PRESENCE_WATCHES_PER_CALLER", 8, 1, 1_000),
  };
}

/** The queue keeps a request at most this long (services/push/queue.ts PUSH_STREAM_OPTIONS.maxAgeMs). */
const PUSH_MAX_TTL_MS = 7 * 86_400_000;

function pushConfig(
  int: (name: string, fallback: number, min: number, max: number) => number,
  bool: (name: string, fallback: boolean) => boolean,
  read: (name: string) => string | undefined,
): PushConfig {
  const maxTtlMs = int("SWITCHBOARD_PUSH_MAX_TTL_MS", PUSH_MAX_TTL_MS, 60_000, PUSH_MAX_TTL_MS);
  const defaultTtlMs = int("SWITCHBOARD_PUSH_DEFAULT_TTL_MS", 86_400_000, 1_000, PUSH_MAX_TTL_MS);
  if (defaultTtlMs > maxTtlMs) {
    throw new ConfigError("SWITCHBOARD_PUSH_DEFAULT_TTL_MS", `must be at most SWITCHBOARD_PUSH_MAX_TTL_MS (${maxTtlMs}; got ${defaultTtlMs})`);
  }
  return {
    maxDevicesPerUser: int("SWITCHBOARD_PUSH_MAX_DEVICES_PER_USER", 5, 1, 100),
    defaultTtlMs,
    maxTtlMs,
    webPushHosts: hostPatterns("SWITCHBOARD_PUSH_WEB_PUSH_HOSTS", read("SWITCHBOARD_PUSH_WEB_PUSH_HOSTS"), DEFAULT_WEB_PUSH_HOSTS),
    webhookHosts: hostPatterns("SWITCHBOARD_PUSH_WEBHOOK_HOSTS", read("SWITCHBOARD_PUSH_WEBHOOK_HOSTS"), []),
    allowPrivateTargets: bool("SWITCHBOARD_PUSH_ALLOW_PRIVATE_TARGETS", false),
    workerConcurrency: int("SWITCHBOARD_PUSH_WORKER_CONCURRENCY", 64, 0, 4_096),
    ackWaitMs: int("SWITCHBOARD_PUSH_ACK_WAIT_MS", 60_000, 1_000, 3_600_000),
    retryBaseMs: int("SWITCHBOARD_PUSH_RETRY_BASE_MS", 1_000, 10, 600_000),
    retryMaxMs: int("SWITCHBOARD_PUSH_RETRY_MAX_MS", 300_000, 100, 3_600_000),
  };
}

/**
 * Comma-separated exact hosts or "*.suffix" patterns, lower-cased; IPv6 literals with or without
 * brackets. Unset (or empty, as every variable here) = the fallback; "none" = no host at all.
 */
function hostPatterns(variable: string, raw: string | undefined, fallback: readonly string[]): readonly string[] {
  if (raw === undefined) return fallback;
  if (raw.toLowerCase() === "none") return [];
  const out: string[] = [];
  for (const item of raw.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "")) {
    const host = item.replace(/^\[(.*)\]$/, "$1");
    const ok = host.includes(":") ? /^[0-9a-f:.]+$/.test(host) : /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(host);
    if (!ok) throw new ConfigError(variable, `must be host names, IP addresses or *.suffix patterns separated by commas (got "${item}")`);
    out.push(host);
  }
  return out;
}

/**
 * A wildcard bind address is not reachable as such: other processes get this machine's first
 * non-internal IPv4 address (a container's or pod's own address, which its replicas do not share,
 * unlike a service name), else its host name.
 */
function advertiseHost(given: string | undefined, bindHost: string): string {
  if (given !== undefined && given !== "") return given;
  if (bindHost !== "0.0.0.0" && bindHost !== "::" && bindHost !== "[::]") return bindHost;
  for (const addrs of Object.values(networkInterfaces())) {
    const v4 = addrs?.find((a) => a.family === "IPv4" && !a.internal);
    if (v4) return v4.address;
  }
  return hostname();
}

/** Not trimmed: a secret is taken byte for byte. */
function meshSecret(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  if (Buffer.byteLength(raw, "utf8") < MIN_MESH_SECRET_BYTES) {
    throw new ConfigError("SWITCHBOARD_MESH_SECRET", `must be at least ${MIN_MESH_SECRET_BYTES} bytes (got ${Buffer.byteLength(raw, "utf8")})`);
  }
  return raw;
}

/** Upper bound for any gateway message limit: the edge forwards small messages only. */
export const MAX_GATEWAY_MESSAGE_BYTES = 4 * 1024 * 1024;

/** "pkg.Service/Method=bytes,..." (which methods exist is checked when the gateway starts). */
function methodSizes(variable: string, raw: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (raw === undefined) return out;
  for (const item of raw.split(",").map((s) => s.trim())) {
    const m = /^([A-Za-z_][\w.]*\/[A-Za-z_]\w*)=(\d{1,7})$/.exec(item);
    if (!m) throw new ConfigError(variable, `must be entries like pkg.Service/Method=16384 separated by commas (got "${item}")`);
    const n = Number(m[2]);
    if (n < 64 || n > MAX_GATEWAY_MESSAGE_BYTES) {
      throw new ConfigError(variable, `has ${m[1]}=${n}: must be between 64 and ${MAX_GATEWAY_MESSAGE_BYTES} bytes`);
    }
    out[m[1]!] = n;
  }
  return out;
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

/**
 * Push provider credentials (services/push/README.md, "Providers"). A platform whose credentials
 * are all unset uses the log provider; a partial set is an error, never a silent fallback.
 */
export interface PushProvidersConfig {
  /** VAPID keys as `web-push generate-vapid-keys` prints them (base64url), and the contact subject. */
  readonly vapid: { readonly publicKey: string; readonly privateKey: string; readonly subject: string } | undefined;
  /** Path of the Firebase service account JSON (read when the providers are built). */
  readonly fcmServiceAccountFile: string | undefined;
  readonly fcmEndpoint: string;
  /** Path of the APNs .p8 key, its key id, the team id, the app's bundle id. */
  readonly apns: { readonly keyFile: string; readonly keyId: string; readonly teamId: string; readonly topic: string } | undefined;
  readonly apnsEndpoint: string;
  /** The webhook signing key (decoded from `whsec_<base64>`). */
  readonly webhookSecret: Buffer | undefined;
  /** Deadline of one provider request. */
  readonly timeoutMs: number;
  /** Keep-alive sockets per provider origin. */
  readonly maxSockets: number;
}

function pushProvidersConfig(
  read: (name: string) => string | undefined,
  int: (name: string, fallback: number, min: number, max: number) => number,
): PushProvidersConfig {
  const allOrNone = <K extends string>(names: Record<K, string>): Record<K, string> | undefined => {
    const values = Object.fromEntries(Object.entries<string>(names).map(([k, name]) => [k, read(name)])) as Record<K, string | undefined>;
    const missing = Object.entries<string>(names).filter(([k]) => values[k as K] === undefined);
    if (missing.length === Object.keys(names).length) return undefined;
    if (missing.length > 0) throw new ConfigError(missing[0]![1], "must be set along with the other variables of its provider");
    return values as Record<K, string>;
  };
  const endpoint = (name: string, fallback: string): string => {
    const v = read(name) ?? fallback;
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new ConfigError(name, `must be an http(s) URL (got "${v}")`);
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new ConfigError(name, `must be an http(s) URL (got "${v}")`);
    return u.origin;
  };
  const base64urlBytes = (name: string, value: string, bytes: number): void => {
    if (!/^[A-Za-z0-9_-]+$/.test(value) || Buffer.from(value, "base64url").length !== bytes) {
      throw new ConfigError(name, `must be ${bytes} bytes in base64url (as web-push generate-vapid-keys prints)`);
    }
  };
  const vapid = allOrNone({
    publicKey: "SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY",
    privateKey: "SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY",
    subject: "SWITCHBOARD_PUSH_VAPID_SUBJECT",
  });
  if (vapid) {
    base64urlBytes("SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY", vapid.publicKey, 65);
    base64urlBytes("SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY", vapid.privateKey, 32);
    if (!/^(mailto:\S+@\S+|https:\/\/\S+)$/.test(vapid.subject)) {
      throw new ConfigError("SWITCHBOARD_PUSH_VAPID_SUBJECT", `must be a mailto: or https: URL (got "${vapid.subject}")`);
    }
  }
  const apns = allOrNone({
    keyFile: "SWITCHBOARD_PUSH_APNS_KEY_FILE",
    keyId: "SWITCHBOARD_PUSH_APNS_KEY_ID",
    teamId: "SWITCHBOARD_PUSH_APNS_TEAM_ID",
    topic: "SWITCHBOARD_PUSH_APNS_TOPIC",
  });
  const secretText = read("SWITCHBOARD_PUSH_WEBHOOK_SECRET");
  let webhookSecret: Buffer | undefined;
  if (secretText !== undefined) {
    const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secretText);
    webhookSecret = m ? Buffer.from(m[1]!, "base64") : undefined;
    if (!webhookSecret || webhookSecret.length < 24 || webhookSecret.length > 64) {
      throw new ConfigError("SWITCHBOARD_PUSH_WEBHOOK_SECRET", "must be whsec_ followed by 24-64 random bytes in base64");
    }
  }
  return {
    vapid,
    fcmServiceAccountFile: read("SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE"),
    fcmEndpoint: endpoint("SWITCHBOARD_PUSH_FCM_ENDPOINT", "https://fcm.googleapis.com"),
    apns,
    apnsEndpoint: endpoint("SWITCHBOARD_PUSH_APNS_ENDPOINT", "https://api.push.apple.com"),
    webhookSecret,
    timeoutMs: int("SWITCHBOARD_PUSH_PROVIDER_TIMEOUT_MS", 10_000, 100, 120_000),
    maxSockets: int("SWITCHBOARD_PUSH_PROVIDER_MAX_SOCKETS", 32, 1, 1_024),
  };
}
