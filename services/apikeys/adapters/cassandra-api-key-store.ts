import { migrateOnFirstUse } from "../../../platform/cassandra/migrations.js";
import type { CqlRow, CqlSession } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { apiKeyMigrations } from "../migrations.js";
import type { ApiKeyRecord, ApiKeyStore } from "../ports.js";

/**
 * ApiKeyStore on Cassandra/ScyllaDB: `api_keys` keyed by id (insert and revoke are LWTs, so
 * the partition never mixes LWT and plain writes) plus `api_keys_by_owner` for listing.
 * Schema migrated on first use (and again after a failed attempt).
 */
export class CassandraApiKeyStore implements ApiKeyStore {
  constructor(
    private readonly cql: CqlSession,
    private readonly log?: EngineLog,
  ) {
    this.ensureSchema = migrateOnFirstUse(cql, apiKeyMigrations, log);
  }

  /** Applies this store's migrations once (idempotent); operations call it themselves. */
  readonly ensureSchema: () => Promise<void>;

  async insert(r: ApiKeyRecord): Promise<boolean> {
    await this.ensureSchema();
    const applied = await this.cql.executeLwt(
      "INSERT INTO api_keys (id, owner_id, secret_sha256, name, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
      [r.id, r.ownerId, r.secretSha256, r.name, r.createdAt, r.revokedAt ?? null],
    );
    if (applied) {
      await this.cql.execute("INSERT INTO api_keys_by_owner (owner_id, id, created_at) VALUES (?, ?, ?)", [r.ownerId, r.id, r.createdAt], {
        idempotent: true,
      });
    }
    return applied;
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    await this.ensureSchema();
    const rows = await this.cql.execute(
      "SELECT id, owner_id, secret_sha256, name, created_at, revoked_at FROM api_keys WHERE id = ?",
      [id],
      { idempotent: true },
    );
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  async revoke(id: string, at: Date): Promise<boolean> {
    // Read first: on a missing row Cassandra treats every column as null, so a bare
    // `IF revoked_at = null` would apply and create a phantom row. Conditioning on the owner we
    // read makes the LWT apply only to an existing, not yet revoked key.
    const current = await this.get(id);
    if (!current) return false;
    if (current.revokedAt) return true;
    await this.cql.executeLwt("UPDATE api_keys SET revoked_at = ? WHERE id = ? IF owner_id = ? AND revoked_at = null", [
      at,
      id,
      current.ownerId,
    ]);
    // Not applied only when a concurrent revoke won: the key is revoked either way.
    return true;
  }

  async listByOwner(ownerId: string): Promise<readonly ApiKeyRecord[]> {
    await this.ensureSchema();
    const ids = await this.cql.execute("SELECT id FROM api_keys_by_owner WHERE owner_id = ?", [ownerId], { idempotent: true });
    const records = await Promise.all(ids.map((row) => this.get(String(row["id"]))));
    return records
      .filter((r): r is ApiKeyRecord => r !== undefined && r.ownerId === ownerId)
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
  }
}

function toRecord(r: CqlRow): ApiKeyRecord {
  const revoked = r["revoked_at"];
  return {
    id: String(r["id"]),
    ownerId: String(r["owner_id"]),
    secretSha256: String(r["secret_sha256"]),
    name: String(r["name"] ?? ""),
    createdAt: r["created_at"] as Date,
    ...(revoked instanceof Date ? { revokedAt: revoked } : {}),
  };
}
