import { DomainError } from "../../../platform/errors.js";
import { runMigrations } from "../../../platform/cassandra/migrations.js";
import type { CqlRow, CqlSession } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { linkMigrations } from "../migrations.js";
import type { Link, LinkStore, RedirectType } from "../ports.js";

/**
 * LinkStore on Cassandra/ScyllaDB: `links` keyed by code. Inserts and deletes are lightweight
 * transactions (no mixing of LWT and plain writes on a partition); reads are LOCAL_QUORUM.
 * The schema is migrated on first use (and again after a failed attempt).
 */
export class CassandraLinkStore implements LinkStore {
  private schema: Promise<void> | undefined;

  constructor(
    private readonly cql: CqlSession,
    private readonly log?: EngineLog,
  ) {}

  /** Applies the links migrations (idempotent); operations call it themselves. */
  ensureSchema(): Promise<void> {
    this.schema ??= runMigrations(this.cql, linkMigrations, this.log ? { log: this.log } : {}).then(
      () => undefined,
      (err: unknown) => {
        this.schema = undefined;
        throw err;
      },
    );
    return this.schema;
  }

  async insertIfAbsent(link: Link): Promise<boolean> {
    await this.ensureSchema();
    return this.cql.executeLwt(
      "INSERT INTO links (code, long_url, owner_id, created_at, expires_at, redirect_type) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
      [link.code, link.longUrl, link.ownerId, link.createdAt, link.expiresAt ?? null, link.redirectType],
    );
  }

  async get(code: string): Promise<Link | undefined> {
    await this.ensureSchema();
    const rows = await this.cql.execute(
      "SELECT code, long_url, owner_id, created_at, expires_at, redirect_type FROM links WHERE code = ?",
      [code],
      { idempotent: true },
    );
    const row = rows[0];
    return row ? toLink(row) : undefined;
  }

  async delete(code: string): Promise<boolean> {
    await this.ensureSchema();
    return this.cql.executeLwt("DELETE FROM links WHERE code = ? IF EXISTS", [code]);
  }
}

function toLink(r: CqlRow): Link {
  const rt = Number(r["redirect_type"]);
  if (rt !== 301 && rt !== 302) throw new DomainError("Internal", `link ${String(r["code"])} has redirect_type ${rt}`);
  const expires = r["expires_at"];
  return {
    code: String(r["code"]),
    longUrl: String(r["long_url"]),
    ownerId: String(r["owner_id"] ?? ""),
    createdAt: r["created_at"] as Date,
    ...(expires instanceof Date ? { expiresAt: expires } : {}),
    redirectType: rt as RedirectType,
  };
}
