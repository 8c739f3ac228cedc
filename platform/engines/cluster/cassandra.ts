import cassandra from "cassandra-driver";
import type { HostPort } from "../../config.js";
import { DomainError } from "../../errors.js";
import { keyspaceDdl, quoteIdent, type CqlFlavor } from "../../cassandra/keyspace.js";
import { DriverCqlSession, type CqlBatchOptions, type CqlOptions, type CqlPage, type CqlRow, type CqlSession, type CqlStatement } from "../../cassandra/session.js";
import { silentLog, type EngineLog } from "../log.js";

export interface CassandraOptions {
  readonly contactPoints: readonly HostPort[];
  readonly localDataCenter: string;
  readonly keyspace: string;
  readonly replicationFactor: number;
  readonly flavor: CqlFlavor;
  /** NetworkTopologyStrategy in localDataCenter instead of SimpleStrategy (default false). */
  readonly networkTopology?: boolean;
  readonly connectTimeoutMs?: number;
  readonly log?: EngineLog;
}

/**
 * Cluster wiring for CQL: connects in the background (retrying forever with capped backoff),
 * creates the keyspace for the flavor, selects it, and from then on serves a CqlSession. Until
 * connected every call fails fast with Unavailable; after that the driver reconnects to nodes
 * by itself and per-call failures map to Unavailable (see session.ts).
 */
export class CassandraConnector implements CqlSession {
  readonly keyspace: string;
  private client: cassandra.Client | undefined;
  private session: DriverCqlSession | undefined;
  private closed = false;
  private lastError: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private version: string | undefined;
  private readonly log: EngineLog;
  private readonly ready: Promise<void>;
  private resolveReady: () => void = () => {};

  constructor(private readonly options: CassandraOptions) {
    this.keyspace = options.keyspace;
    quoteIdent(options.keyspace);
    this.log = (options.log ?? silentLog).child({ component: "cassandra" });
    this.ready = new Promise((r) => (this.resolveReady = r));
    void this.connectLoop(0);
  }

  /** Resolves once connected with the keyspace in place; never rejects. */
  whenConnected(): Promise<void> {
    return this.ready;
  }

  /** release_version of the node we first connected to. */
  serverVersion(): string | undefined {
    return this.version;
  }

  status(): { ok: boolean; detail: string } {
    const where = this.options.contactPoints.map((h) => `${h.host}:${h.port}`).join(",");
    if (!this.session || !this.client) {
      return { ok: false, detail: `not connected to ${where}${this.lastError ? `: ${this.lastError}` : ""}` };
    }
    const up = this.client.hosts.values().filter((h) => h.isUp()).length;
    if (up === 0) return { ok: false, detail: `no node of ${where} is up` };
    return { ok: true, detail: `${up} node(s) up, keyspace ${this.keyspace}, version ${this.version ?? "?"}` };
  }

  async execute(cql: string, params?: readonly unknown[], options?: CqlOptions): Promise<readonly CqlRow[]> {
    return this.live().execute(cql, params, options);
  }

  async executePage(
    cql: string,
    params: readonly unknown[],
    page: { readonly fetchSize: number; readonly pageState?: string },
    options?: CqlOptions,
  ): Promise<CqlPage> {
    return this.live().executePage(cql, params, page, options);
  }

  async executeLwt(cql: string, params?: readonly unknown[], options?: CqlOptions): Promise<boolean> {
    return this.live().executeLwt(cql, params, options);
  }

  async executeBatch(statements: readonly CqlStatement[], options?: CqlBatchOptions): Promise<void> {
    return this.live().executeBatch(statements, options);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const c = this.client;
    this.client = undefined;
    this.session = undefined;
    if (c) await c.shutdown().catch(() => {});
  }

  private live(): DriverCqlSession {
    if (!this.session) {
      throw new DomainError("Unavailable", `cassandra is unavailable (${this.status().detail})`, { retryAfterMs: 1000 });
    }
    return this.session;
  }

  private async connectLoop(attempt: number): Promise<void> {
    if (this.closed) return;
    const o = this.options;
    const client = new cassandra.Client({
      contactPoints: o.contactPoints.map((h) => `${h.host}:${h.port}`),
      localDataCenter: o.localDataCenter,
      queryOptions: { consistency: cassandra.types.consistencies.localQuorum, prepare: true },
      socketOptions: { connectTimeout: o.connectTimeoutMs ?? 3_000, readTimeout: 12_000 },
      policies: { reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(200, 5_000, false) },
    });
    client.on("log", (level: string, _cls: string, message: string) => {
      if (level === "error") this.log.debug({ message }, "cassandra driver");
    });
    try {
      await client.connect();
      await client.execute(
        keyspaceDdl({
          keyspace: o.keyspace,
          flavor: o.flavor,
          replicationFactor: o.replicationFactor,
          ...(o.networkTopology ? { dataCenter: o.localDataCenter } : {}),
        }),
      );
      await client.execute(`USE ${quoteIdent(o.keyspace)}`);
      const rs = await client.execute("SELECT release_version FROM system.local");
      this.version = String(rs.first()?.["release_version"] ?? "unknown");
      if (this.closed) {
        await client.shutdown().catch(() => {});
        return;
      }
      this.client = client;
      this.session = new DriverCqlSession(client, o.keyspace);
      this.lastError = undefined;
      this.log.info({ version: this.version, keyspace: o.keyspace }, "cassandra connected");
      this.resolveReady();
    } catch (err) {
      this.lastError = (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 200);
      if (attempt === 0) this.log.warn({ err: this.lastError }, "cassandra unreachable; retrying in the background");
      await client.shutdown().catch(() => {});
      if (this.closed) return;
      this.retryTimer = setTimeout(() => void this.connectLoop(attempt + 1), Math.min(250 * 2 ** Math.min(attempt, 4), 3_000));
      this.retryTimer.unref?.();
    }
  }
}
