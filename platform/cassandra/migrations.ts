import { createHash, randomUUID } from "node:crypto";
import { DomainError } from "../errors.js";
import { silentLog, type EngineLog } from "../engines/log.js";
import type { CqlSession } from "./session.js";

/**
 * One schema change. Statements run in order, unprepared. Write them idempotently
 * (`CREATE TABLE IF NOT EXISTS`, ...): a process that dies after a statement but before the
 * migration is recorded leaves it to be re-run by the next runner.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly statements: readonly string[];
}

/** A service's migrations, in order. `scope` keeps services apart in the shared keyspace. */
export interface MigrationSet {
  readonly scope: string;
  readonly migrations: readonly Migration[];
}

export interface MigrationResult {
  readonly applied: readonly number[];
  readonly alreadyApplied: readonly number[];
}

export interface MigrateOptions {
  /** Identifies this runner in the lock row (default: random). */
  readonly owner?: string;
  /** Lock lease; renewed every third of it while migrating (default 60 s). */
  readonly lockTtlSeconds?: number;
  /** Give up waiting for another runner's lock after this (default 120 s). */
  readonly waitTimeoutMs?: number;
  readonly pollMs?: number;
  readonly log?: EngineLog;
}

export const MIGRATION_TABLES: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS schema_migrations (
    scope text, version int, name text, checksum text, applied_at timestamp,
    PRIMARY KEY ((scope), version))`,
  `CREATE TABLE IF NOT EXISTS schema_migration_locks (
    scope text PRIMARY KEY, owner text, acquired_at timestamp)`,
];

/**
 * sha256 over the name and the statements with whitespace runs collapsed, so re-indenting a
 * migration is not a change but editing its CQL is.
 */
export function migrationChecksum(m: Migration): string {
  const h = createHash("sha256");
  h.update(m.name);
  for (const s of m.statements) h.update("\n--\n" + s.trim().replace(/\s+/g, " "));
  return h.digest("hex");
}

/** Throws on an empty scope, versions not strictly increasing positive integers, or empty statements. */
export function validateMigrationSet(set: MigrationSet): void {
  const bad = (why: string) => new DomainError("FailedPrecondition", `migrations for ${set.scope || "(no scope)"}: ${why}`);
  if (!/^[a-z][a-z0-9_-]*$/.test(set.scope)) throw bad("scope must be lower-case letters, digits, _ or -");
  let prev = 0;
  for (const m of set.migrations) {
    if (!Number.isInteger(m.version) || m.version <= prev) throw bad(`version ${m.version} must be an integer above ${prev}`);
    if (m.name.trim() === "") throw bad(`version ${m.version} has no name`);
    if (m.statements.length === 0 || m.statements.some((s) => s.trim() === "")) {
      throw bad(`version ${m.version} has an empty statement list or statement`);
    }
    prev = m.version;
  }
}

/**
 * What to do given the rows already recorded: pending migrations in order, or an error when an
 * applied migration's checksum no longer matches the code. Versions recorded but unknown to this
 * code (a newer release ran) are left alone. Pure: unit-tested.
 */
export function planMigrations(
  set: MigrationSet,
  recorded: ReadonlyMap<number, { name: string; checksum: string }>,
): { pending: Migration[]; alreadyApplied: number[] } {
  const pending: Migration[] = [];
  const alreadyApplied: number[] = [];
  for (const m of set.migrations) {
    const r = recorded.get(m.version);
    if (!r) {
      pending.push(m);
      continue;
    }
    const sum = migrationChecksum(m);
    if (r.checksum !== sum) {
      throw new DomainError(
        "FailedPrecondition",
        `migration ${set.scope} v${m.version} (${m.name}) was changed after it was applied: ` +
          `recorded checksum ${r.checksum.slice(0, 12)}, code has ${sum.slice(0, 12)}; add a new migration instead`,
      );
    }
    alreadyApplied.push(m.version);
  }
  return { pending, alreadyApplied };
}

/**
 * Applies the set's pending migrations, at most once across processes.
 *
 * 1. Creates the bookkeeping tables (idempotent).
 * 2. Fast path: if everything is recorded with matching checksums, returns (no lock taken).
 * 3. Otherwise claims the scope's lock row with an LWT (`INSERT ... IF NOT EXISTS USING TTL`);
 *    a runner that loses waits and retries, then re-plans: what the winner applied is now recorded.
 * 4. Applies each pending migration and records it (version, name, checksum, applied_at),
 *    renewing the lease by LWT (`IF owner = me`); losing the lease aborts the run.
 * 5. Releases the lock (`DELETE ... IF owner = me`).
 */
export async function runMigrations(session: CqlSession, set: MigrationSet, options: MigrateOptions = {}): Promise<MigrationResult> {
  validateMigrationSet(set);
  const log = (options.log ?? silentLog).child({ component: "migrations", scope: set.scope });
  const owner = options.owner ?? randomUUID();
  const ttl = options.lockTtlSeconds ?? 60;
  const pollMs = options.pollMs ?? 250;
  const deadline = Date.now() + (options.waitTimeoutMs ?? 120_000);

  for (const ddl of MIGRATION_TABLES) await session.execute(ddl, [], { prepare: false });

  const first = planMigrations(set, await readRecorded(session, set.scope));
  if (first.pending.length === 0) return { applied: [], alreadyApplied: first.alreadyApplied };

  // Claim the lock.
  for (;;) {
    const got = await session.executeLwt(
      "INSERT INTO schema_migration_locks (scope, owner, acquired_at) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?",
      [set.scope, owner, new Date(), ttl],
    );
    if (got) break;
    if (Date.now() > deadline) {
      throw new DomainError("Unavailable", `migrations for ${set.scope}: another runner holds the lock; gave up waiting`);
    }
    await sleep(pollMs);
  }
  log.info({ owner }, "migration lock acquired");

  let lost: DomainError | undefined;
  const renew = setInterval(() => {
    session
      .executeLwt(
        "UPDATE schema_migration_locks USING TTL ? SET owner = ?, acquired_at = ? WHERE scope = ? IF owner = ?",
        [ttl, owner, new Date(), set.scope, owner],
      )
      .then((ok) => {
        if (!ok) lost = new DomainError("FailedPrecondition", `migrations for ${set.scope}: lost the migration lock`);
      })
      .catch((err: unknown) => log.warn({ err }, "migration lock renewal failed"));
  }, Math.max(1000, (ttl * 1000) / 3));
  renew.unref?.();

  try {
    const plan = planMigrations(set, await readRecorded(session, set.scope));
    const applied: number[] = [];
    for (const m of plan.pending) {
      log.info({ version: m.version, name: m.name }, "applying migration");
      for (const stmt of m.statements) {
        if (lost) throw lost;
        await session.execute(stmt, [], { prepare: false });
      }
      if (lost) throw lost;
      await session.execute(
        "INSERT INTO schema_migrations (scope, version, name, checksum, applied_at) VALUES (?, ?, ?, ?, ?)",
        [set.scope, m.version, m.name, migrationChecksum(m), new Date()],
      );
      applied.push(m.version);
    }
    return { applied, alreadyApplied: plan.alreadyApplied };
  } finally {
    clearInterval(renew);
    await session
      .executeLwt("DELETE FROM schema_migration_locks WHERE scope = ? IF owner = ?", [set.scope, owner])
      .catch((err: unknown) => log.warn({ err }, "migration lock release failed (it expires by TTL)"));
  }
}

/** The rows recorded for a scope. */
export async function readRecorded(session: CqlSession, scope: string): Promise<Map<number, { name: string; checksum: string }>> {
  const rows = await session.execute("SELECT version, name, checksum FROM schema_migrations WHERE scope = ?", [scope], {
    idempotent: true,
  });
  return new Map(rows.map((r) => [Number(r["version"]), { name: String(r["name"]), checksum: String(r["checksum"]) }]));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A store's "migrate on first use": the returned function runs the set once and shares the
 * result; after a failure (Cassandra still down) the next call tries again, so building a store
 * never fails because its backend is not up yet.
 */
export function migrateOnFirstUse(session: CqlSession, set: MigrationSet, log?: EngineLog): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => {
    done ??= runMigrations(session, set, log ? { log } : {}).then(
      () => undefined,
      (err: unknown) => {
        done = undefined;
        throw err;
      },
    );
    return done;
  };
}
