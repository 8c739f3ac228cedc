import { migrateOnFirstUse } from "../../../platform/cassandra/migrations.js";
import type { CqlRow, CqlSession, CqlStatement } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { unavailable } from "../../../platform/errors.js";
import { aggregateClicks, latestProgress, type CodeDelta } from "../batch.js";
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
import { byHumanClicks, firstDay, MAX_REFERRERS } from "./window.js";

/**
 * ClickStatsStore on Cassandra/ScyllaDB: idempotent per-batch delta rows, rolled up into
 * absolute totals behind the consumer's ack floor. No counters and no LWT: every write is a
 * plain one that can be repeated.
 *
 * Why not counters: an increment is not idempotent, so one that timed out but had applied is
 * counted again when the batch is redelivered, and nothing can tell afterwards. Every write
 * here can be repeated with the same effect, so any error (timeouts included) is handled by
 * recording the batch again.
 *
 * Why this shape (measured on this box, Cassandra CPU per 500-click message over 10,000 links:
 * one row per (code, seq) in per-code partitions ~60 ms, the same rows in 32 shard partitions
 * ~15-18 ms, one row per (shard, seq) ~7-11 ms, the LWT claim ~2-3 ms; the old store, an LWT +
 * a counter batch per click, managed ~2,000 clicks/s): the node's cost is per partition
 * mutation and per statement, so a message becomes at most DELTA_SHARDS rows.
 *
 * - Claim: `click_batch_claims` maps the content-derived batch id to the lowest stream seq that
 *   carried it: each message writes its claim with timestamp CLAIM_TS_BASE - seq, so the lowest
 *   seq's cell wins whatever the order (a plain, repeatable write instead of an LWT, ~2-3 ms of
 *   node CPU per message here). Read back: another owner = a republish of counted clicks, skip.
 *   The fold settles the rare race (a republish recorded while its original's claim was not yet
 *   written): it skips delta rows whose seq does not own their batch id, which at fold time is
 *   final (every seq up to the floor has written its claim).
 * - Deltas: `click_deltas ((shard), seq)`: per shard of the codes (FNV-1a mod DELTA_SHARDS), the
 *   message's clicks of those codes summed per code, day, referrer and country, as one JSON text. A
 *   rewrite is the same row. Rows of messages recorded at the same moment are written together
 *   (one single-partition batch per shard).
 * - Roll-up (`click_rollup ((shard), code, kind, key)`): every message with seq <= the durable's
 *   ack floor is recorded (messages are acked only after their rows are written). On each
 *   progress report the store folds every shard's deltas in (watermark, floor] into the totals.
 *   Each roll-up row is written `USING TIMESTAMP <the floor it was folded to>`, so its write
 *   time says which deltas it holds: a fold adds to a row only the deltas above the row's own
 *   write time. That makes folds plain, repeatable writes: a fold that died half-way is simply
 *   done again, two folders racing write values that are each exact at their own floor, and the
 *   cell with the highest timestamp (the highest floor) wins. The shard's static `watermark`
 *   (highest floor fully folded) and `as_of` are written last; then the folded deltas are
 *   range-deleted. A late duplicate delta below the watermark is never read.
 * - Read: one slice of the code's roll-up rows: bounded, and exact as of the shard's `as_of`
 *   (about a second behind the consumer while it keeps up; GetLinkStats shows both).
 *
 * Residual (documented): seqs are the CLICKS stream's; deleting and re-creating that stream
 * restarts them below the watermarks: reset the analytics tables when doing so.
 */
export class CassandraClickStatsStore implements ClickStatsStore {
  constructor(
    private readonly cql: CqlSession,
    private readonly log?: EngineLog,
  ) {
    this.ensureSchema = migrateOnFirstUse(cql, analyticsMigrations, log);
  }

  /** Applies this store's migrations once (idempotent); operations call it themselves. */
  readonly ensureSchema: () => Promise<void>;

  private failNextAfterWrite = false;
  /** Per shard: the watermark this process last saw or wrote (skips idle shards). */
  private readonly folded = new Map<number, number>();
  private folding = false;

  /** Test hook: the next recordBatch writes everything, then fails as a write timeout would. */
  failNextRecordAfterWrite(): void {
    this.failNextAfterWrite = true;
  }

  async recordBatch(batch: ClickBatchRef, clicks: readonly ClickRecord[]): Promise<RecordBatchResult> {
    await this.ensureSchema();
    if (!(await this.claim(batch))) return { counted: 0, duplicate: true };
    const byShard = new Map<number, Record<string, WireDelta>>();
    for (const [code, d] of aggregateClicks(clicks)) {
      const shard = deltaShard(code);
      let o = byShard.get(shard);
      if (!o) byShard.set(shard, (o = {}));
      o[code] = toWire(d);
    }
    await Promise.all(
      [...byShard].map(([shard, o]) =>
        this.writeRow(shard, { cql: "INSERT INTO click_deltas (shard, seq, batch_id, d) VALUES (?, ?, ?, ?)", params: [shard, batch.seq, batch.id, JSON.stringify(o)] }),
      ),
    );
    if (this.failNextAfterWrite) {
      this.failNextAfterWrite = false;
      throw unavailable("cassandra (injected: applied, then timed out)");
    }
    return { counted: clicks.length, duplicate: false };
  }

  /**
   * Claims `batch.id` for `batch.seq` and tells whether it is this seq's. The lowest seq always
   * owns an id: the claim is written with timestamp CLAIM_TS_BASE - seq, so whatever the order
   * of the writes the lowest seq's cell wins (a plain write: repeatable, no LWT). Read back,
   * another owner means a republish already claimed: skip. Two messages with one id written at
   * the same moment may both read themselves; the fold settles it (`owners`), so the answer
   * here only saves writing a known duplicate.
   */
  private async claim(batch: ClickBatchRef): Promise<boolean> {
    await this.cql.execute("INSERT INTO click_batch_claims (batch_id, seq) VALUES (?, ?) USING TIMESTAMP ?", [batch.id, batch.seq, CLAIM_TS_BASE - batch.seq], {
      idempotent: true,
    });
    const rows = await this.cql.execute("SELECT seq FROM click_batch_claims WHERE batch_id = ?", [batch.id], { idempotent: true });
    const owner = rows[0] ? num(rows[0]["seq"]) : undefined;
    if (owner === undefined) throw unavailable("cassandra (batch claim not readable yet; retry)");
    return owner === batch.seq;
  }

  /**
   * Owner seq of each batch id. At fold time every message at or below the floor has written
   * its claim (it was acked after), so the lowest seq among those with an id is final.
   */
  private async owners(ids: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const missing: string[] = [];
    for (const id of ids) {
      const o = this.ownerCache.get(id);
      if (o !== undefined) out.set(id, o);
      else missing.push(id);
    }
    const reads: Promise<void>[] = [];
    for (let i = 0; i < missing.length; i += FOLD_READ_CODES) {
      reads.push(
        this.cql.execute("SELECT batch_id, seq FROM click_batch_claims WHERE batch_id IN ?", [missing.slice(i, i + FOLD_READ_CODES)], { idempotent: true }).then((rows) => {
          for (const r of rows) out.set(String(r["batch_id"]), num(r["seq"]));
        }),
      );
    }
    await Promise.all(reads);
    for (const id of missing) {
      const o = out.get(id);
      if (o === undefined) continue;
      if (this.ownerCache.size >= OWNER_CACHE) this.ownerCache.delete(this.ownerCache.keys().next().value!);
      this.ownerCache.set(id, o);
    }
    return out;
  }

  /** Batch id -> owner seq, as settled at fold time (one message's id is met in every shard's fold). */
  private readonly ownerCache = new Map<string, number>();

  /**
   * Delta rows of the messages being recorded at the same moment are written together: one
   * single-partition batch per shard for several messages. Each row keeps its own (shard, seq)
   * key, so combining changes nothing about idempotence; a failed batch fails every message
   * with a row in it (each is recorded again, harmlessly).
   */
  private writeRow(shard: number, row: CqlStatement): Promise<void> {
    let g = this.combining.get(shard);
    if (!g) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.combining.set(shard, (g = { rows: [], done, resolve, reject }));
    }
    g.rows.push(row);
    if (++this.combinedRows >= COMBINE_MAX_ROWS) this.flushRows();
    else this.combineTimer ??= setTimeout(() => this.flushRows(), COMBINE_WAIT_MS);
    return g.done;
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

  async reportProgress(p: ConsumerProgress, options?: { readonly fold?: boolean }): Promise<void> {
    await this.ensureSchema();
    await this.cql.execute(
      "INSERT INTO click_consumer_progress (scope, durable, ack_floor, pending_messages, pending_clicks, oldest_pending, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      [PROGRESS_SCOPE, p.durable, p.ackFloorSeq, p.pendingMessages, p.pendingClicks, p.oldestPending ?? null, p.at],
      { idempotent: true },
    );
    this.progressRead = undefined;
    // One sweep at a time: a report during a long sweep only updates the progress row (the
    // consumer reports every second whatever the folds take).
    if (this.folding || options?.fold === false) return;
    this.folding = true;
    try {
      // Everything published before the first unacked message is at or below the floor.
      const asOf = p.oldestPending ?? p.at;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < DELTA_SHARDS) {
          const shard = next++;
          await this.foldShard(shard, p.ackFloorSeq, asOf).catch((err: unknown) => {
            // Left for the next report: nothing is lost, the numbers are just older meanwhile.
            this.folded.delete(shard);
            this.log?.debug({ err, shard }, "folding click deltas failed; retrying on the next report");
          });
        }
      };
      await Promise.all(Array.from({ length: FOLD_CONCURRENCY }, worker));
    } finally {
      this.folding = false;
    }
  }

  /** Folds the shard's deltas up to `floor` into its roll-up rows (in steps of FOLD_STEP_ROWS deltas). */
  private async foldShard(shard: number, floor: number, asOf: Date): Promise<void> {
    const known = this.folded.get(shard);
    if (known !== undefined && known >= floor) return;
    const wm = await this.cql.execute("SELECT watermark FROM click_rollup WHERE shard = ? LIMIT 1", [shard], { idempotent: true });
    let w = wm[0] ? num(wm[0]["watermark"]) : 0;
    while (w < floor) {
      const deltas = await this.cql.execute("SELECT seq, batch_id, d FROM click_deltas WHERE shard = ? AND seq > ? AND seq <= ? LIMIT ?", [shard, w, floor, FOLD_STEP_ROWS], {
        idempotent: true,
      });
      const to = deltas.length === FOLD_STEP_ROWS ? num(deltas[deltas.length - 1]!["seq"]) : floor;
      const owner = await this.owners([...new Set(deltas.map((r) => String(r["batch_id"])))]);
      // Per code: its deltas in this step, each with its seq (rows only take what is above their write time).
      const byCode = new Map<string, [number, WireDelta][]>();
      for (const r of deltas) {
        const seq = num(r["seq"]);
        const o = owner.get(String(r["batch_id"]));
        // No claim: expired (7 days), too old for a republish to be around: counted.
        if (o !== undefined && o !== seq) continue; // a republish of a batch another seq holds
        for (const [code, d] of Object.entries(JSON.parse(String(r["d"])) as Record<string, WireDelta>)) {
          let l = byCode.get(code);
          if (!l) byCode.set(code, (l = []));
          l.push([seq, d]);
        }
      }
      const codes = [...byCode.keys()];
      const current = new Map<string, { human: number; bot: number; wt: number }>();
      const reads: Promise<void>[] = [];
      for (let i = 0; i < codes.length; i += FOLD_READ_CODES) {
        const part = codes.slice(i, i + FOLD_READ_CODES);
        reads.push(
          this.cql
            .execute("SELECT code, kind, key, human, bot, WRITETIME(human) AS wt FROM click_rollup WHERE shard = ? AND code IN ?", [shard, part], { idempotent: true })
            .then((rows) => {
              for (const row of rows) {
                if (row["kind"] === null || row["kind"] === undefined) continue; // static-only row
                current.set(rowKey(String(row["code"]), String(row["kind"]), String(row["key"])), {
                  human: num(row["human"]),
                  bot: num(row["bot"]),
                  wt: num(row["wt"]),
                });
              }
            }),
        );
      }
      await Promise.all(reads);
      const updates: CqlStatement[] = [];
      for (const [code, list] of byCode) {
        const next = new Map<string, { kind: string; key: string; human: number; bot: number }>();
        for (const [seq, d] of list) {
          for (const [kind, key, human, bot] of rowsOf(d)) {
            const k = rowKey(code, kind, key);
            const base = current.get(k) ?? { human: 0, bot: 0, wt: -1 };
            if (seq <= base.wt) continue; // already in that row
            let n = next.get(k);
            if (!n) next.set(k, (n = { kind, key, human: base.human, bot: base.bot }));
            n.human += human;
            n.bot += bot;
          }
        }
        for (const n of next.values()) {
          updates.push({
            cql: "UPDATE click_rollup USING TIMESTAMP ? SET human = ?, bot = ? WHERE shard = ? AND code = ? AND kind = ? AND key = ?",
            params: [to, n.human, n.bot, shard, code, n.kind, n.key],
          });
        }
      }
      const writes: Promise<void>[] = [];
      for (let i = 0; i < updates.length; i += DELTA_CHUNK) writes.push(this.cql.executeBatch(updates.slice(i, i + DELTA_CHUNK), { idempotent: true }));
      await Promise.all(writes);
      // Only now the watermark (and, at the floor, as_of): a fold that dies before this line is
      // redone from the old watermark, and the rows it wrote already take nothing twice.
      await this.cql.execute(
        to === floor
          ? "UPDATE click_rollup USING TIMESTAMP ? SET watermark = ?, as_of = ? WHERE shard = ?"
          : "UPDATE click_rollup USING TIMESTAMP ? SET watermark = ? WHERE shard = ?",
        to === floor ? [to, to, asOf, shard] : [to, to, shard],
        { idempotent: true },
      );
      await this.cql.execute("DELETE FROM click_deltas WHERE shard = ? AND seq <= ?", [shard, to], { idempotent: true });
      w = to;
    }
    this.folded.set(shard, w);
  }

  /**
   * The latest lag report, read at most every PROGRESS_CACHE_MS per process: reports come once a
   * second, and a page of stats reads must not double its queries for it.
   */
  private freshness(): Promise<ConsumerProgress | undefined> {
    const now = Date.now();
    if (this.progressRead && now - this.progressRead.at < PROGRESS_CACHE_MS) return this.progressRead.value;
    const value = this.cql
      .execute("SELECT durable, ack_floor, pending_messages, pending_clicks, oldest_pending, at FROM click_consumer_progress WHERE scope = ?", [PROGRESS_SCOPE], {
        idempotent: true,
      })
      .then((rows) => latestProgress(rows.map(progressOf)));
    this.progressRead = { at: now, value };
    value.catch(() => {
      if (this.progressRead?.value === value) this.progressRead = undefined;
    });
    return value;
  }

  private progressRead: { at: number; value: Promise<ConsumerProgress | undefined> } | undefined;

  async get(code: string, query?: ClickStatsQuery): Promise<ClickStats> {
    await this.ensureSchema();
    const from = firstDay(query);
    const [rows, freshness] = await Promise.all([
      this.cql.execute("SELECT kind, key, human, bot, as_of FROM click_rollup WHERE shard = ? AND code = ?", [deltaShard(code), code], { idempotent: true }),
      this.freshness(),
    ]);
    let human = 0;
    let bot = 0;
    let asOf: Date | undefined;
    const perDay: { day: string; human: number; bot: number }[] = [];
    const perReferrer: { referrer: string; human: number }[] = [];
    const perCountry: { country: string; human: number }[] = [];
    for (const r of rows) {
      if (r["as_of"] instanceof Date) asOf = r["as_of"];
      const kind = r["kind"];
      const key = String(r["key"] ?? "");
      if (kind === "t") {
        human = num(r["human"]);
        bot = num(r["bot"]);
      } else if (kind === "d" && key >= from) perDay.push({ day: key, human: num(r["human"]), bot: num(r["bot"]) });
      else if (kind === "r" && num(r["human"]) > 0) perReferrer.push({ referrer: key, human: num(r["human"]) });
      else if (kind === "c" && num(r["human"]) > 0) perCountry.push({ country: key, human: num(r["human"]) });
    }
    perDay.sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : 0));
    perReferrer.sort((a, b) => b.human - a.human || (a.referrer < b.referrer ? -1 : 1));
    return {
      total: human + bot,
      human,
      bot,
      perDay,
      perReferrer: perReferrer.slice(0, MAX_REFERRERS),
      perCountry: byHumanClicks(perCountry),
      ...(freshness ? { freshness } : {}),
      ...(asOf ? { asOf } : {}),
    };
  }
}

/** Statements per unlogged batch (~5 KB: Cassandra's default batch size warning). */
const DELTA_CHUNK = 64;
/** Delta rows are combined across messages for up to this long ... */
const COMBINE_WAIT_MS = 3;
/** ... or until this many wait. */
const COMBINE_MAX_ROWS = 1_024;
/** Delta rows read per fold step (each holds one message's clicks of one shard). */
const FOLD_STEP_ROWS = 1_024;
/** Claim timestamps count down from here: the lowest seq writes the newest cell. */
const CLAIM_TS_BASE = Number.MAX_SAFE_INTEGER;
const OWNER_CACHE = 8_192;
/** Codes per `IN` read of a fold step. */
const FOLD_READ_CODES = 64;
const FOLD_CONCURRENCY = 8;
const PROGRESS_SCOPE = "clicks";
const PROGRESS_CACHE_MS = 250;

/**
 * Partitions of `click_deltas` and `click_rollup`: a code lives in deltaShard(code). Part of the
 * data layout: changing it needs the tables rebuilt.
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

/**
 * One code's share of a message as stored: [human, bot, human per day, bot per day, human per
 * referrer, human per country]; 0 = empty. Rows written before countries were counted have five
 * elements (no country).
 */
type WireDelta = [number, number, Record<string, number> | 0, Record<string, number> | 0, Record<string, number> | 0, (Record<string, number> | 0)?];

function toWire(d: CodeDelta): WireDelta {
  const obj = (m: ReadonlyMap<string, number>) => (m.size === 0 ? 0 : Object.fromEntries(m));
  const wire: WireDelta = [d.human, d.bot, obj(d.humanDays), obj(d.botDays), obj(d.referrers)];
  if (d.countries.size > 0) wire.push(obj(d.countries));
  return wire;
}

/** The roll-up rows a delta adds to: [kind, key, human, bot]. */
function* rowsOf(d: WireDelta): Generator<[string, string, number, number]> {
  yield ["t", "", d[0], d[1]];
  const days = new Map<string, [number, number]>();
  if (d[2]) for (const [day, n] of Object.entries(d[2])) days.set(day, [n, 0]);
  if (d[3]) for (const [day, n] of Object.entries(d[3])) days.set(day, [days.get(day)?.[0] ?? 0, n]);
  for (const [day, [h, b]] of days) yield ["d", day, h, b];
  if (d[4]) for (const [ref, n] of Object.entries(d[4])) yield ["r", ref, n, 0];
  if (d[5]) for (const [country, n] of Object.entries(d[5])) yield ["c", country, n, 0];
}

function rowKey(code: string, kind: string, key: string): string {
  return `${code}\u0000${kind}\u0000${key}`;
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

/** bigint/int columns come back as Long or number (null when unset). */
function num(v: CqlRow[string]): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number") return v;
  return Number((v as { toString(): string }).toString());
}
