import { migrateOnFirstUse } from "../../../platform/cassandra/migrations.js";
import type { CqlRow, CqlSession, CqlStatement } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { unavailable } from "../../../platform/errors.js";
import { aggregateClicks, latestProgress } from "../batch.js";
import { analyticsMigrations } from "../migrations.js";
import type {
  ClickBatchRef,
  ClickRecord,
  ClickStats,
  ClickStatsQuery,
  ClickStatsStore,
  ConsumerProgress,
  RecordBatchResult,
} from "../ports.js";
import { firstDay, MAX_REFERRERS } from "./window.js";

/**
 * ClickStatsStore on Cassandra/ScyllaDB from idempotent per-batch delta rows, folded into
 * absolute totals behind a watermark.
 *
 * Why not counters: a counter increment is not idempotent, so an increment that timed out but
 * had applied is counted again when the batch is redelivered, and nothing can tell afterwards.
 * Every write here is a plain row whose second write equals the first, so any error (timeout
 * included) is handled by repeating the whole `recordBatch`.
 *
 * Why per batch: the old store took one LWT + one counter batch per click (~2,000 clicks/s on
 * this box). Now one CLICKS message (a ClickBatch of up to 500 clicks) costs one LWT claim and
 * one `click_deltas` row per distinct code in it (its clicks summed per day and referrer), the
 * rows grouped into DELTA_SHARDS partitions, so one single-partition batch (one mutation) each.
 *
 * - Claim: `click_batch_claims` maps the content-derived batch id to the stream seq that owns
 *   it (`INSERT ... IF NOT EXISTS`; when not applied, a SERIAL read of the owner). Same seq:
 *   this message (a redelivery, a retry after a timeout, or another consumer racing on it), so
 *   go on and (re)write its deltas; another seq: a republish of counted clicks, skip.
 * - Deltas: `click_deltas ((shard), code, seq)`. Rewrites are no-ops; two racing consumers write
 *   the same values. A code's rows are one slice of its shard's partition.
 * - Fold: every batch with seq <= the durable's ack floor is recorded (messages are acked only
 *   after their deltas are written). Folding a code reads its deltas up to that floor and its
 *   rollup, and writes the new totals + `watermark = floor` in one conditional single-partition
 *   batch (`IF watermark = <as read>`: concurrent folders cannot both add the same deltas), then
 *   range-deletes the folded deltas. A delta written late (a slow duplicate of an acked batch)
 *   has seq <= watermark and is ignored, then deleted by the next fold.
 * - Read: deltas first, then the rollup; sum the deltas above the rollup's watermark. If a fold
 *   commits in between, the rollup read after it already holds what it deleted, so nothing is
 *   missed or counted twice. Reads stay bounded because the consumer folds a code once it has
 *   FOLD_AFTER_DELTAS unfolded deltas or has waited FOLD_AFTER_MS, and a read that meets more
 *   than READ_FOLD_DELTAS deltas (e.g. after a consumer crash) folds the code itself.
 *
 * Residual window (documented): the seq space is the CLICKS stream's; deleting and re-creating
 * that stream restarts seqs at 1, below the watermarks: reset this keyspace's analytics tables
 * (or the watermarks) when doing so.
 */
export class CassandraClickStatsStore implements ClickStatsStore {
  constructor(
    private readonly cql: CqlSession,
    private readonly log?: EngineLog,
    options: CassandraClickStatsOptions = {},
  ) {
    this.ensureSchema = migrateOnFirstUse(cql, analyticsMigrations, log);
    this.foldAfterDeltas = options.foldAfterDeltas ?? FOLD_AFTER_DELTAS;
    this.foldAfterMs = options.foldAfterMs ?? FOLD_AFTER_MS;
  }

  private readonly foldAfterDeltas: number;
  private readonly foldAfterMs: number;

  /** Applies this store's migrations once (idempotent); operations call it themselves. */
  readonly ensureSchema: () => Promise<void>;

  /** Codes this process wrote deltas for and has not folded since: unfolded rows, first write. */
  private readonly dirty = new Map<string, { rows: number; since: number }>();
  private lastFloor = 0;
  private failNextAfterWrite = false;

  /** Test hook: the next recordBatch writes everything, then fails as a write timeout would. */
  failNextRecordAfterWrite(): void {
    this.failNextAfterWrite = true;
  }

  async recordBatch(batch: ClickBatchRef, clicks: readonly ClickRecord[]): Promise<RecordBatchResult> {
    await this.ensureSchema();
    if (!(await this.claim(batch))) return { counted: 0, duplicate: true };
    const deltas = aggregateClicks(clicks);
    // One single-partition unlogged batch per shard: a message's ~500 codes become ~DELTA_SHARDS
    // partition mutations instead of one each (the node's cost is mostly per mutation).
    const byShard = new Map<number, CqlStatement[]>();
    for (const [code, d] of deltas) {
      const shard = deltaShard(code);
      let rows = byShard.get(shard);
      if (!rows) byShard.set(shard, (rows = []));
      rows.push({
        cql: "INSERT INTO click_deltas (shard, code, seq, human, bot, human_days, bot_days, referrers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        // Zeros and empty maps unset (undefined): no cell at all, which costs the node less than
        // a cell holding nothing (read back as null = 0 / empty).
        params: [shard, code, batch.seq, d.human || undefined, d.bot || undefined, mapOrUnset(d.humanDays), mapOrUnset(d.botDays), mapOrUnset(d.referrers)],
      });
    }
    await Promise.all([...byShard].map(([shard, rows]) => this.writeRows(shard, rows)));
    const now = Date.now();
    for (const code of deltas.keys()) {
      const d = this.dirty.get(code);
      if (d) d.rows++;
      else this.dirty.set(code, { rows: 1, since: now });
    }
    if (this.failNextAfterWrite) {
      this.failNextAfterWrite = false;
      throw unavailable("cassandra (injected: applied, then timed out)");
    }
    return { counted: clicks.length, duplicate: false };
  }

  /**
   * Rows of the messages being recorded at the same moment are written together: one batch
   * (one partition mutation) per shard and DELTA_CHUNK rows for several messages instead of one
   * per shard per message. Rows keep their own (code, seq) keys, so combining changes nothing
   * about idempotence; a failed batch fails every message with rows in that shard (each is
   * recorded again, harmlessly).
   */
  private writeRows(shard: number, rows: readonly CqlStatement[]): Promise<void> {
    let p = this.combining.get(shard);
    if (!p) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.combining.set(shard, (p = { rows: [], done, resolve, reject }));
    }
    for (const r of rows) p.rows.push(r);
    this.combinedRows += rows.length;
    if (this.combinedRows >= COMBINE_MAX_ROWS) this.flushRows();
    else this.combineTimer ??= setTimeout(() => this.flushRows(), COMBINE_WAIT_MS);
    return p.done;
  }

  private flushRows(): void {
    if (this.combineTimer) clearTimeout(this.combineTimer);
    this.combineTimer = undefined;
    const groups = this.combining;
    this.combining = new Map();
    this.combinedRows = 0;
    for (const g of groups.values()) {
      const writes: Promise<void>[] = [];
      for (let i = 0; i < g.rows.length; i += DELTA_CHUNK) writes.push(this.cql.executeBatch(g.rows.slice(i, i + DELTA_CHUNK), { idempotent: true }));
      Promise.all(writes).then(() => g.resolve(), g.reject);
    }
  }

  private combining = new Map<number, { rows: CqlStatement[]; done: Promise<void>; resolve: () => void; reject: (err: unknown) => void }>();
  private combinedRows = 0;
  private combineTimer: NodeJS.Timeout | undefined;

  /** True when `batch.seq` owns `batch.id` (first claim, or this same message again). */
  private async claim(batch: ClickBatchRef): Promise<boolean> {
    const applied = await this.cql.executeLwt("INSERT INTO click_batch_claims (batch_id, seq) VALUES (?, ?) IF NOT EXISTS", [batch.id, batch.seq]);
    if (applied) return true;
    // The LWT result's other columns differ between Cassandra and ScyllaDB: read the owner.
    const rows = await this.cql.execute("SELECT seq FROM click_batch_claims WHERE batch_id = ?", [batch.id], {
      consistency: "localSerial",
      idempotent: true,
    });
    const owner = rows[0] ? num(rows[0]["seq"]) : undefined;
    if (owner === undefined) throw unavailable("cassandra (batch claim vanished; retry)");
    return owner === batch.seq;
  }

  async reportProgress(p: ConsumerProgress): Promise<void> {
    await this.ensureSchema();
    await this.cql.execute(
      "INSERT INTO click_consumer_progress (scope, durable, ack_floor, pending_messages, pending_clicks, oldest_pending, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      [PROGRESS_SCOPE, p.durable, p.ackFloorSeq, p.pendingMessages, p.pendingClicks, p.oldestPending ?? null, p.at],
      { idempotent: true },
    );
    this.lastFloor = Math.max(this.lastFloor, p.ackFloorSeq);
    // One sweep at a time: a report during a long sweep only updates the progress row (the
    // consumer reports every second whatever the folds take).
    if (this.folding) return;
    this.folding = true;
    try {
      await this.foldDue(p.ackFloorSeq, Date.now());
    } finally {
      this.folding = false;
    }
  }

  private folding = false;

  /** Folds the codes this process dirtied that have enough deltas or have waited long enough. */
  private async foldDue(floor: number, now: number): Promise<void> {
    const due: string[] = [];
    for (const [code, d] of this.dirty) {
      if (d.rows >= this.foldAfterDeltas || now - d.since >= this.foldAfterMs) due.push(code);
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < due.length) {
        const code = due[next++]!;
        this.dirty.delete(code);
        try {
          await this.fold(code, floor);
        } catch (err) {
          // Left for a later report (or a read) to fold: nothing is lost, reads just sum more rows.
          this.dirty.set(code, { rows: this.foldAfterDeltas, since: now });
          this.log?.debug({ err, code }, "folding click deltas failed; retrying later");
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(FOLD_CONCURRENCY, due.length) }, worker));
  }

  /** Adds the code's deltas with seq in (watermark, floor] to its rollup; false when another folder won. */
  private async fold(code: string, floor: number): Promise<boolean> {
    const [deltas, rollup] = await Promise.all([
      this.cql.execute("SELECT seq, human, bot, human_days, bot_days, referrers FROM click_deltas WHERE shard = ? AND code = ? AND seq <= ?", [deltaShard(code), code, floor], {
        idempotent: true,
      }),
      this.readRollup(code),
    ]);
    const w = rollup.watermark;
    if (floor <= w) {
      if (deltas.length > 0) await this.deleteDeltas(code, w);
      return true;
    }
    const sum = new Rollup();
    for (const r of deltas) if (num(r["seq"]) > w) sum.addDelta(r);
    const changed = rollup.merge(sum);
    const statements: CqlStatement[] = [];
    if (w === 0 && !rollup.exists) {
      statements.push({
        cql: "INSERT INTO click_rollup (code, kind, key, watermark, human, bot) VALUES (?, 't', '', ?, ?, ?) IF NOT EXISTS",
        params: [code, floor, rollup.human, rollup.bot],
      });
    } else {
      statements.push({
        cql: "UPDATE click_rollup SET watermark = ?, human = ?, bot = ? WHERE code = ? AND kind = 't' AND key = '' IF watermark = ?",
        params: [floor, rollup.human, rollup.bot, code, w],
      });
    }
    for (const [kind, key, v] of changed) {
      statements.push({ cql: "UPDATE click_rollup SET human = ?, bot = ? WHERE code = ? AND kind = ? AND key = ?", params: [v.human, v.bot, code, kind, key] });
    }
    const applied = await this.cql.executeLwtBatch(statements);
    if (applied) await this.deleteDeltas(code, floor);
    return applied;
  }

  private deleteDeltas(code: string, upTo: number): Promise<readonly CqlRow[]> {
    return this.cql.execute("DELETE FROM click_deltas WHERE shard = ? AND code = ? AND seq <= ?", [deltaShard(code), code, upTo], { idempotent: true });
  }

  private async readRollup(code: string): Promise<Rollup> {
    const rows = await this.cql.execute("SELECT watermark, kind, key, human, bot FROM click_rollup WHERE code = ?", [code], { idempotent: true });
    const r = new Rollup();
    for (const row of rows) r.addRollupRow(row);
    return r;
  }

  async get(code: string, query?: ClickStatsQuery): Promise<ClickStats> {
    await this.ensureSchema();
    const from = firstDay(query);
    // Deltas strictly before the rollup (see the class comment); progress alongside.
    const [deltas, progress] = await Promise.all([
      this.cql.execute("SELECT seq, human, bot, human_days, bot_days, referrers FROM click_deltas WHERE shard = ? AND code = ?", [deltaShard(code), code], {
        idempotent: true,
      }),
      this.cql.execute(
        "SELECT durable, ack_floor, pending_messages, pending_clicks, oldest_pending, at FROM click_consumer_progress WHERE scope = ?",
        [PROGRESS_SCOPE],
        { idempotent: true },
      ),
    ]);
    const r = await this.readRollup(code);
    const w = r.watermark;
    const sum = new Rollup();
    for (const row of deltas) if (num(row["seq"]) > w) sum.addDelta(row);
    r.merge(sum);
    const reports = progress.map(progressOf);
    const freshness = latestProgress(reports);
    if (deltas.length > READ_FOLD_DELTAS) {
      // Nobody folded this code lately (its consumer died?): fold up to the last reported floor.
      const floor = Math.max(this.lastFloor, ...reports.map((p) => p.ackFloorSeq));
      void this.fold(code, floor).catch((err: unknown) => this.log?.debug({ err, code }, "read-time fold failed"));
    }
    const perDay = [...r.days]
      .filter(([day]) => day >= from)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([day, v]) => ({ day, human: v.human, bot: v.bot }))
      .filter((d) => d.human > 0 || d.bot > 0);
    const perReferrer = [...r.referrers]
      .map(([referrer, v]) => ({ referrer, human: v }))
      .filter((x) => x.human > 0)
      .sort((a, b) => b.human - a.human || (a.referrer < b.referrer ? -1 : 1))
      .slice(0, MAX_REFERRERS);
    return { total: r.human + r.bot, human: r.human, bot: r.bot, perDay, perReferrer, ...(freshness ? { freshness } : {}) };
  }
}

export interface CassandraClickStatsOptions {
  /** Fold a code once this process wrote this many deltas for it (default FOLD_AFTER_DELTAS). */
  readonly foldAfterDeltas?: number;
  /** ... or once its oldest unfolded delta is this old (default FOLD_AFTER_MS). */
  readonly foldAfterMs?: number;
}

/** Rows per unlogged delta batch. */
const DELTA_CHUNK = 64;
/** Delta rows are combined across messages for up to this long ... */
const COMBINE_WAIT_MS = 3;
/** ... or until this many wait. */
const COMBINE_MAX_ROWS = 4_096;
/**
 * Partitions of `click_deltas`: a code's rows live in partition deltaShard(code). Part of the
 * data layout: changing it needs the table emptied (fold everything) first.
 */
export const DELTA_SHARDS = 32;

/** FNV-1a of the code's UTF-16 units, mod DELTA_SHARDS: stable across processes and versions. */
export function deltaShard(code: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < code.length; i++) {
    h ^= code.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % DELTA_SHARDS;
}
/** A code is folded once this process wrote this many deltas for it ... */
export const FOLD_AFTER_DELTAS = 256;
/** ... or its first unfolded delta is this old. */
export const FOLD_AFTER_MS = 30_000;
/** A read that meets more deltas than this folds the code (nobody else did). */
export const READ_FOLD_DELTAS = 1024;
const FOLD_CONCURRENCY = 8;
const PROGRESS_SCOPE = "clicks";

/** Totals of one code: its rollup rows, or a sum of deltas. */
class Rollup {
  watermark = 0;
  exists = false;
  human = 0;
  bot = 0;
  readonly days = new Map<string, { human: number; bot: number }>();
  readonly referrers = new Map<string, number>();

  addRollupRow(row: CqlRow): void {
    this.exists = true;
    this.watermark = num(row["watermark"]);
    const kind = row["kind"];
    const key = String(row["key"] ?? "");
    const human = num(row["human"]);
    const bot = num(row["bot"]);
    if (kind === "t") {
      this.human = human;
      this.bot = bot;
    } else if (kind === "d") this.days.set(key, { human, bot });
    else if (kind === "r") this.referrers.set(key, human);
  }

  addDelta(row: CqlRow): void {
    this.human += num(row["human"]);
    this.bot += num(row["bot"]);
    for (const [day, n] of entries(row["human_days"])) this.day(day).human += n;
    for (const [day, n] of entries(row["bot_days"])) this.day(day).bot += n;
    for (const [ref, n] of entries(row["referrers"])) this.referrers.set(ref, (this.referrers.get(ref) ?? 0) + n);
  }

  /** Adds `other`; returns the day and referrer rows that changed, with their new values. */
  merge(other: Rollup): [kind: string, key: string, value: { human: number; bot: number }][] {
    this.human += other.human;
    this.bot += other.bot;
    const changed: [string, string, { human: number; bot: number }][] = [];
    for (const [day, v] of other.days) {
      const d = this.day(day);
      d.human += v.human;
      d.bot += v.bot;
      changed.push(["d", day, d]);
    }
    for (const [ref, n] of other.referrers) {
      const v = (this.referrers.get(ref) ?? 0) + n;
      this.referrers.set(ref, v);
      changed.push(["r", ref, { human: v, bot: 0 }]);
    }
    return changed;
  }

  private day(day: string): { human: number; bot: number } {
    let d = this.days.get(day);
    if (!d) this.days.set(day, (d = { human: 0, bot: 0 }));
    return d;
  }
}

function progressOf(r: CqlRow): ConsumerProgress {
  const oldest = r["oldest_pending"];
  return {
    durable: String(r["durable"]),
    ackFloorSeq: num(r["ack_floor"]),
    pendingMessages: num(r["pending_messages"]),
    pendingClicks: num(r["pending_clicks"]),
    oldestPending: oldest instanceof Date ? oldest : undefined,
    at: r["at"] instanceof Date ? r["at"] : new Date(0),
  };
}

function mapOrUnset(m: ReadonlyMap<string, number>): Record<string, number> | undefined {
  return m.size === 0 ? undefined : Object.fromEntries(m);
}

/** A frozen map<text, int> as read (an object; null when empty). */
function entries(v: unknown): [string, number][] {
  if (v === null || v === undefined) return [];
  if (v instanceof Map) return [...(v as Map<string, unknown>)].map(([k, n]) => [k, num(n as CqlRow[string])]);
  return Object.entries(v as Record<string, unknown>).map(([k, n]) => [k, num(n as CqlRow[string])]);
}

/** bigint/int columns come back as Long or number (null when unset). */
function num(v: CqlRow[string]): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number") return v;
  return Number((v as { toString(): string }).toString());
}
