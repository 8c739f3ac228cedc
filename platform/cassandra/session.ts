import cassandra from "cassandra-driver";
import { DomainError, unavailable } from "../errors.js";

const { errors, types } = cassandra;
type Client = cassandra.Client;

/** A result row: column name -> value as the driver decodes it (Date, string, number, Long...). */
export type CqlRow = { readonly [column: string]: unknown };

export type CqlConsistency = "one" | "localOne" | "quorum" | "localQuorum" | "all" | "serial" | "localSerial";

export interface CqlOptions {
  /** Default localQuorum (serial phase of LWT: localSerial). */
  readonly consistency?: CqlConsistency;
  /** Prepared by default; pass false for DDL and one-off statements. */
  readonly prepare?: boolean;
  /** Lets the driver retry/speculate; set for reads and idempotent writes. */
  readonly idempotent?: boolean;
  /** Client-side timeout of this request (driver readTimeout); default: the client's. */
  readonly timeoutMs?: number;
  /**
   * The whole result in one response, no paging: what `IN` on the partition key with `ORDER BY`
   * requires (the coordinator sorts the partitions' rows in memory). Only with a small LIMIT.
   */
  readonly unpaged?: boolean;
}

export interface CqlPage {
  readonly rows: readonly CqlRow[];
  /** Opaque cursor for the next page; undefined on the last page. */
  readonly pageState: string | undefined;
}

/**
 * What services use to talk CQL. Every statement is prepared (once per query string, cached by
 * the driver) unless `prepare: false`. Errors: no reachable node, timeouts, Unavailable
 * coordinator responses -> DomainError "Unavailable" (for writes the outcome is then unknown);
 * bad CQL -> "Internal".
 */
export interface CqlSession {
  readonly keyspace: string;
  execute(cql: string, params?: readonly unknown[], options?: CqlOptions): Promise<readonly CqlRow[]>;
  executePage(
    cql: string,
    params: readonly unknown[],
    page: { readonly fetchSize: number; readonly pageState?: string },
    options?: CqlOptions,
  ): Promise<CqlPage>;
  /**
   * A lightweight transaction (`IF NOT EXISTS`, `IF col = ?`, `IF EXISTS`). Returns only whether it
   * applied: the rest of the LWT result differs between Cassandra and ScyllaDB, so it is ignored.
   */
  executeLwt(cql: string, params?: readonly unknown[], options?: CqlOptions): Promise<boolean>;
  /**
   * An UNLOGGED batch of plain (non-LWT) writes, sent as one request: one round trip and one
   * coordinator request instead of one per statement. Succeeds only when every statement was
   * applied at the consistency level; on an error each statement may or may not have been
   * applied (as with the same statements sent concurrently). Not atomic across partitions: use
   * it for writes that are safe to repeat or to leave half-done. Per-statement `USING TIMESTAMP`
   * / `USING TTL` are allowed. `counter: true` sends counter updates the same way.
   */
  executeBatch(statements: readonly CqlStatement[], options?: CqlBatchOptions): Promise<void>;
}

export interface CqlBatchOptions extends Omit<CqlOptions, "prepare"> {
  /** A batch of counter updates (`BEGIN COUNTER BATCH`); every statement must be one. */
  readonly counter?: boolean;
}

/** One statement of a batch. */
export interface CqlStatement {
  readonly cql: string;
  readonly params: readonly unknown[];
}

const CONSISTENCY: Record<CqlConsistency, number> = {
  one: types.consistencies.one,
  localOne: types.consistencies.localOne,
  quorum: types.consistencies.quorum,
  localQuorum: types.consistencies.localQuorum,
  all: types.consistencies.all,
  serial: types.consistencies.serial,
  localSerial: types.consistencies.localSerial,
};

/** CqlSession over a connected cassandra-driver Client (keyspace already selected). */
export class DriverCqlSession implements CqlSession {
  constructor(
    private readonly client: Client,
    readonly keyspace: string,
  ) {}

  async execute(cql: string, params: readonly unknown[] = [], options: CqlOptions = {}): Promise<readonly CqlRow[]> {
    const rs = await this.run(cql, params, options);
    return rs.rows as unknown as CqlRow[];
  }

  async executePage(
    cql: string,
    params: readonly unknown[],
    page: { readonly fetchSize: number; readonly pageState?: string },
    options: CqlOptions = {},
  ): Promise<CqlPage> {
    const rs = await this.run(cql, params, options, page);
    return { rows: rs.rows as unknown as CqlRow[], pageState: rs.pageState ?? undefined };
  }

  async executeLwt(cql: string, params: readonly unknown[] = [], options: CqlOptions = {}): Promise<boolean> {
    const rs = await this.run(cql, params, options);
    return appliedOf(rs.rows as unknown as CqlRow[]);
  }

  async executeBatch(statements: readonly CqlStatement[], options: CqlBatchOptions = {}): Promise<void> {
    try {
      await this.client.batch(
        statements.map((st) => ({ query: st.cql, params: st.params as unknown[] })),
        {
          prepare: true,
          logged: false,
          ...(options.counter ? { counter: true } : {}),
          consistency: CONSISTENCY[options.consistency ?? "localQuorum"],
          ...(options.idempotent !== undefined ? { isIdempotent: options.idempotent } : {}),
          ...(options.timeoutMs !== undefined ? { readTimeout: options.timeoutMs } : {}),
        },
      );
    } catch (err) {
      throw mapCqlError(err, statements[0]?.cql ?? "BATCH");
    }
  }

  private async run(
    cql: string,
    params: readonly unknown[],
    options: CqlOptions,
    page?: { fetchSize: number; pageState?: string },
  ): Promise<cassandra.types.ResultSet> {
    try {
      return await this.client.execute(cql, params as unknown[], {
        prepare: options.prepare ?? true,
        consistency: CONSISTENCY[options.consistency ?? "localQuorum"],
        serialConsistency: types.consistencies.localSerial,
        ...(options.idempotent !== undefined ? { isIdempotent: options.idempotent } : {}),
        ...(options.timeoutMs !== undefined ? { readTimeout: options.timeoutMs } : {}),
        ...(page ? { fetchSize: page.fetchSize, ...(page.pageState ? { pageState: page.pageState } : {}) } : {}),
        // The driver sets no page size when it is 0.
        ...(options.unpaged ? { fetchSize: 0 } : {}),
      });
    } catch (err) {
      throw mapCqlError(err, cql);
    }
  }
}

/** Reads `[applied]` of an LWT result; nothing else (its other columns differ across backends). */
export function appliedOf(rows: readonly CqlRow[]): boolean {
  const row = rows[0];
  if (!row) throw new DomainError("Internal", "LWT returned no rows");
  const v = row["[applied]"];
  if (typeof v !== "boolean") throw new DomainError("Internal", "LWT result has no [applied] column");
  return v;
}

/** Driver error -> DomainError (Unavailable for anything that means "try again later"). */
export function mapCqlError(err: unknown, cql: string): DomainError {
  if (err instanceof DomainError) return err;
  const what = `cassandra (${cql.trim().split(/\s+/).slice(0, 3).join(" ")}...)`;
  if (err instanceof errors.NoHostAvailableError || err instanceof errors.OperationTimedOutError) {
    return unavailable(what, err);
  }
  if (err instanceof errors.ResponseError) {
    const c = types.responseErrorCodes;
    const transient = [c.unavailableException, c.overloaded, c.isBootstrapping, c.writeTimeout, c.readTimeout, c.truncateError];
    if (transient.includes(err.code)) return unavailable(what, err);
    return new DomainError("Internal", `${what} failed: ${err.message}`, {}, { cause: err });
  }
  if (err instanceof errors.DriverError || (err instanceof Error && /ECONNREFUSED|socket|closed|shutdown/i.test(err.message))) {
    return unavailable(what, err);
  }
  return new DomainError("Internal", `${what} failed: ${String(err)}`, {}, { cause: err });
}
