import { DomainError } from "../../../platform/errors.js";
import { migrateOnFirstUse } from "../../../platform/cassandra/migrations.js";
import type { CqlRow, CqlSession } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { linkMigrations } from "../migrations.js";
import { decodePageToken, encodePageToken } from "../page-token.js";
import {
  foldCode,
  rowTtlSeconds,
  versionOf,
  type IdempotencyRecord,
  type Link,
  type LinkPage,
  type LinkStore,
  type RedirectType,
  type UpdateResult,
} from "../ports.js";

const COLUMNS = "code, long_url, owner_id, created_at, expires_at, redirect_type, updated_at, version, custom";
const INSERT = `INSERT INTO links (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;
const INDEX_INSERT = "INSERT INTO links_by_owner (owner_id, created_at, code) VALUES (?, ?, ?) USING TTL ?";
/** Plain writes of generated codes are stamped this far in the past (see insertUnique). */
const PLAIN_WRITE_SKEW_MICROS = 1_000_000;

/**
 * LinkStore on Cassandra/ScyllaDB (portable CQL: no materialized views, no secondary indexes):
 * - `links` keyed by code; reads LOCAL_QUORUM. Custom aliases are inserted with an LWT
 *   (`IF NOT EXISTS`); updates (`IF version = ?`) and deletes (`IF owner_id = ?`) are LWTs.
 *   Generated codes are unique by construction and inserted with a plain write (no Paxos: the
 *   hot path of link creation), together with its listing row in one unlogged batch. The link
 *   row's write timestamp is set 1 s in the past so later LWT writes on that code (ballot
 *   timestamps from the server clock) win even with some clock skew between this process and
 *   the database; nothing else writes that partition concurrently,
 *   because nobody knows the code before the create returns.
 * - `links_by_owner` (owner_id partition, created_at DESC, code): the listing index; entries
 *   whose link is gone are skipped on read (a crash between the two writes leaves at most that).
 * - `link_idempotency` ((owner_id, idem_key)) -> code, request hash; LWT insert, TTL.
 * - `link_aliases` (folded code) -> code, created_at: the case-insensitive claim of a link
 *   stored through insertIfAbsent. The link is written first (LWT), then the claim (LWT); the
 *   loser of a claim race removes its own link, so of two creates differing only in case
 *   exactly one survives. A claim only ever follows its link, so a claim whose link
 *   (code and created_at) is gone is stale (deleted, expired, or a crash between the two
 *   deletes) and is taken over with a compare-and-set on the stale value: no TTL to keep in
 *   step with the link's.
 * Rows of links with an expiry carry TTL = expiry + 30 days (the 410 window), then vanish.
 * The schema is migrated on first use (and again after a failed attempt).
 */
export class CassandraLinkStore implements LinkStore {
  constructor(
    private readonly cql: CqlSession,
    private readonly log?: EngineLog,
  ) {
    this.ensureSchema = migrateOnFirstUse(cql, linkMigrations, log);
  }

  /** Applies this store's migrations once (idempotent); operations call it themselves. */
  readonly ensureSchema: () => Promise<void>;

  async insertIfAbsent(link: Link): Promise<boolean> {
    await this.ensureSchema();
    const ttl = rowTtlSeconds(link);
    const applied = await this.cql.executeLwt(`${INSERT} IF NOT EXISTS USING TTL ?`, [...linkParams(link), ttl]);
    if (!applied) return false;
    let claimed: boolean;
    try {
      claimed = await this.claimFolded(link);
    } catch (e) {
      // Outcome unknown: a link without its claim must not stay (a case variant could join it).
      await this.unstore(link).catch(() => undefined);
      throw e;
    }
    if (!claimed) {
      await this.unstore(link);
      return false;
    }
    await this.index(link, ttl);
    return true;
  }

  async insertUnique(link: Link): Promise<void> {
    await this.ensureSchema();
    const ttl = rowTtlSeconds(link);
    const ts = BigInt(Date.now()) * 1000n - BigInt(PLAIN_WRITE_SKEW_MICROS);
    // Both rows in one unlogged batch (one request, one coordinator round trip): acknowledged
    // only once both are written, exactly like the two concurrent INSERTs it replaces.
    await this.cql.executeBatch(
      [
        { cql: `${INSERT} USING TTL ? AND TIMESTAMP ?`, params: [...linkParams(link), ttl, Number(ts)] },
        { cql: INDEX_INSERT, params: [link.ownerId, link.createdAt, link.code, ttl] },
      ],
      { idempotent: true },
    );
  }

  async get(code: string): Promise<Link | undefined> {
    await this.ensureSchema();
    return this.read(code, false);
  }

  async update(next: Link, expectedVersion: number): Promise<UpdateResult> {
    await this.ensureSchema();
    const ttl = rowTtlSeconds(next);
    const set =
      "UPDATE links USING TTL ? SET long_url = ?, owner_id = ?, created_at = ?, expires_at = ?, redirect_type = ?, updated_at = ?, version = ?, custom = ? WHERE code = ?";
    const params = [
      ttl,
      next.longUrl,
      next.ownerId,
      next.createdAt,
      next.expiresAt ?? null,
      next.redirectType,
      next.updatedAt ?? next.createdAt,
      next.version ?? expectedVersion + 1,
      next.custom ?? false,
      next.code,
    ];
    let applied = await this.cql.executeLwt(`${set} IF version = ?`, [...params, expectedVersion]);
    if (!applied) {
      const cur = await this.read(next.code, true);
      if (!cur) return { kind: "not_found" };
      if (versionOf(cur) !== expectedVersion) return { kind: "version_mismatch" };
      // A row written before versions existed has version null (= 1).
      if (cur.version === undefined) applied = await this.cql.executeLwt(`${set} IF version = null`, params);
      if (!applied) return { kind: "version_mismatch" };
    }
    await this.index(next, ttl);
    const stored = await this.read(next.code, false);
    return stored ? { kind: "updated", link: stored } : { kind: "not_found" };
  }

  async delete(code: string, ownerId?: string): Promise<boolean> {
    await this.ensureSchema();
    const cur = await this.read(code, false);
    if (!cur || (ownerId !== undefined && cur.ownerId !== ownerId)) return false;
    const applied =
      ownerId === undefined
        ? await this.cql.executeLwt("DELETE FROM links WHERE code = ? IF EXISTS", [code])
        : await this.cql.executeLwt("DELETE FROM links WHERE code = ? IF owner_id = ?", [code, ownerId]);
    if (applied) {
      await this.cql.execute(
        "DELETE FROM links_by_owner WHERE owner_id = ? AND created_at = ? AND code = ?",
        [cur.ownerId, cur.createdAt, code],
        { idempotent: true },
      );
      await this.releaseFolded(cur);
    }
    return applied;
  }

  async listByOwner(ownerId: string, pageSize: number, pageToken?: string): Promise<LinkPage> {
    await this.ensureSchema();
    const state = pageToken ? decodePageToken(ownerId, pageToken) : undefined;
    let page;
    try {
      page = await this.cql.executePage(
        "SELECT code FROM links_by_owner WHERE owner_id = ?",
        [ownerId],
        { fetchSize: pageSize, ...(state ? { pageState: state } : {}) },
        { idempotent: true },
      );
    } catch (e) {
      // A forged/garbled paging state is refused by the server.
      if (state && e instanceof DomainError && e.kind === "Internal") {
        throw new DomainError("InvalidArgument", "page_token: malformed page token", { field: "page_token" });
      }
      throw e;
    }
    const links = await Promise.all(page.rows.map((r) => this.read(String(r["code"]), false)));
    return {
      links: links.filter((l): l is Link => !!l && l.ownerId === ownerId),
      ...(page.pageState ? { nextPageToken: encodePageToken(ownerId, page.pageState) } : {}),
    };
  }

  async reserveIdempotencyKey(
    ownerId: string,
    key: string,
    record: IdempotencyRecord,
    ttlMs: number,
  ): Promise<{ reserved: boolean; record: IdempotencyRecord }> {
    await this.ensureSchema();
    const ttl = Math.max(1, Math.ceil(ttlMs / 1000));
    const applied = await this.cql.executeLwt(
      "INSERT INTO link_idempotency (owner_id, idem_key, code, request_hash) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
      [ownerId, key, record.code, record.requestHash, ttl],
    );
    if (applied) return { reserved: true, record };
    const cur = await this.readIdempotency(ownerId, key, true);
    if (cur) return { reserved: false, record: cur };
    // Expired between the two statements: try once more.
    return this.reserveIdempotencyKey(ownerId, key, record, ttlMs);
  }

  async getIdempotencyKey(ownerId: string, key: string): Promise<IdempotencyRecord | undefined> {
    await this.ensureSchema();
    return this.readIdempotency(ownerId, key, false);
  }

  async releaseIdempotencyKey(ownerId: string, key: string, code: string): Promise<void> {
    await this.ensureSchema();
    await this.cql.executeLwt("DELETE FROM link_idempotency WHERE owner_id = ? AND idem_key = ? IF code = ?", [ownerId, key, code]);
  }

  /** Claims foldCode(link.code) for this link; false when a live link holds it. */
  private async claimFolded(link: Link): Promise<boolean> {
    const folded = foldCode(link.code);
    for (let attempt = 0; attempt < 5; attempt++) {
      const fresh = await this.cql.executeLwt(
        "INSERT INTO link_aliases (folded, code, created_at) VALUES (?, ?, ?) IF NOT EXISTS",
        [folded, link.code, link.createdAt],
      );
      if (fresh) return true;
      const claim = await this.readClaim(folded, true);
      if (!claim) continue; // released meanwhile
      if (claim.code === link.code && claim.createdAt === link.createdAt.getTime()) return true; // ours (a retried write)
      const holder = await this.read(claim.code, true);
      if (holder && holder.createdAt.getTime() === claim.createdAt) return false;
      const tookOver = await this.cql.executeLwt(
        "UPDATE link_aliases SET code = ?, created_at = ? WHERE folded = ? IF code = ? AND created_at = ?",
        [link.code, link.createdAt, folded, claim.code, new Date(claim.createdAt)],
      );
      if (tookOver) return true;
    }
    throw new DomainError("Unavailable", `alias "${link.code}" is contended; retry`, { retryAfterMs: 100 });
  }

  /** Frees the folded form of a removed link, only while it still points at that link. */
  private async releaseFolded(link: Link): Promise<void> {
    const folded = foldCode(link.code);
    const claim = await this.readClaim(folded, false);
    if (!claim || claim.code !== link.code || claim.createdAt !== link.createdAt.getTime()) return;
    await this.cql.executeLwt("DELETE FROM link_aliases WHERE folded = ? IF code = ? AND created_at = ?", [folded, link.code, link.createdAt]);
  }

  /** Takes back a link this store just inserted (its claim was lost): row only if still ours. */
  private async unstore(link: Link): Promise<void> {
    await this.cql.executeLwt("DELETE FROM links WHERE code = ? IF created_at = ?", [link.code, link.createdAt]);
  }

  private async readClaim(folded: string, serial: boolean): Promise<{ code: string; createdAt: number } | undefined> {
    const rows = await this.cql.execute("SELECT code, created_at FROM link_aliases WHERE folded = ?", [folded], {
      idempotent: true,
      ...(serial ? { consistency: "localSerial" as const } : {}),
    });
    const r = rows[0];
    return r && r["code"] != null && r["created_at"] instanceof Date
      ? { code: String(r["code"]), createdAt: r["created_at"].getTime() }
      : undefined;
  }

  private async index(link: Link, ttl: number): Promise<void> {
    await this.cql.execute(
      INDEX_INSERT,
      [link.ownerId, link.createdAt, link.code, ttl],
      { idempotent: true },
    );
  }

  private async read(code: string, serial: boolean): Promise<Link | undefined> {
    const rows = await this.cql.execute(`SELECT ${COLUMNS} FROM links WHERE code = ?`, [code], {
      idempotent: true,
      ...(serial ? { consistency: "localSerial" as const } : {}),
    });
    const row = rows[0];
    return row ? toLink(row) : undefined;
  }

  private async readIdempotency(ownerId: string, key: string, serial: boolean): Promise<IdempotencyRecord | undefined> {
    const rows = await this.cql.execute(
      "SELECT code, request_hash FROM link_idempotency WHERE owner_id = ? AND idem_key = ?",
      [ownerId, key],
      { idempotent: true, ...(serial ? { consistency: "localSerial" as const } : {}) },
    );
    const r = rows[0];
    return r && r["code"] != null ? { code: String(r["code"]), requestHash: String(r["request_hash"] ?? "") } : undefined;
  }
}

function linkParams(link: Link): unknown[] {
  return [
    link.code,
    link.longUrl,
    link.ownerId,
    link.createdAt,
    // undefined = unset (no tombstone for an absent optional field)
    link.expiresAt ?? undefined,
    link.redirectType,
    link.updatedAt ?? undefined,
    link.version ?? undefined,
    link.custom ?? undefined,
  ];
}

function toLink(r: CqlRow): Link | undefined {
  // A row whose cells expired (TTL) but whose marker did not: treat as absent.
  if (r["long_url"] == null) return undefined;
  const rt = Number(r["redirect_type"]);
  if (rt !== 301 && rt !== 302) throw new DomainError("Internal", `link ${String(r["code"])} has redirect_type ${rt}`);
  const expires = r["expires_at"];
  const updated = r["updated_at"];
  const version = r["version"];
  const custom = r["custom"];
  return {
    code: String(r["code"]),
    longUrl: String(r["long_url"]),
    ownerId: String(r["owner_id"] ?? ""),
    createdAt: r["created_at"] as Date,
    ...(expires instanceof Date ? { expiresAt: expires } : {}),
    redirectType: rt as RedirectType,
    ...(updated instanceof Date ? { updatedAt: updated } : {}),
    ...(version != null ? { version: Number(String(version)) } : {}),
    ...(typeof custom === "boolean" ? { custom } : {}),
  };
}
