import { migrateOnFirstUse } from "../../../platform/cassandra/migrations.js";
import type { CqlRow, CqlSession } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { analyticsMigrations } from "../migrations.js";
import type { ClickRecord, ClickStats, ClickStatsQuery, ClickStatsStore } from "../ports.js";
import { firstDay, MAX_REFERRERS, utcDay } from "./window.js";

/**
 * ClickStatsStore on Cassandra/ScyllaDB counter tables.
 *
 * Exactly-once per event id: `record` first claims the id with an LWT
 * (`INSERT INTO click_events_seen ... IF NOT EXISTS`); only the call that claimed it bumps the
 * counters. If a counter update fails, the claim is released (LWT `DELETE ... IF EXISTS`) and the
 * error is rethrown, so the redelivered message counts it again. Residual window (documented):
 * a process crash between the claim and the counter writes loses that click, and a counter write
 * that timed out but had in fact applied is counted twice on redelivery; both need a failure in
 * the few milliseconds between two statements.
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

  async record(click: ClickRecord): Promise<boolean> {
    await this.ensureSchema();
    const claimed = await this.cql.executeLwt("INSERT INTO click_events_seen (event_id, code) VALUES (?, ?) IF NOT EXISTS", [
      click.eventId,
      click.code,
    ]);
    if (!claimed) return false;
    const day = utcDay(click.time);
    const col = click.human ? "human" : "bot";
    try {
      // One counter batch (one request) instead of a request per counter; like the separate
      // requests it replaces, it is not atomic: on an error each update may or may not be applied.
      const updates = [
        { cql: `UPDATE click_totals SET ${col} = ${col} + 1 WHERE code = ?`, params: [click.code] },
        { cql: `UPDATE click_days SET ${col} = ${col} + 1 WHERE code = ? AND day = ?`, params: [click.code, day] },
      ];
      if (click.human) {
        updates.push({ cql: "UPDATE click_referrers SET human = human + 1 WHERE code = ? AND referrer = ?", params: [click.code, click.referrer] });
      }
      await this.cql.executeBatch(updates, { counter: true });
    } catch (err) {
      await this.cql
        .executeLwt("DELETE FROM click_events_seen WHERE event_id = ? IF EXISTS", [click.eventId])
        .catch(() => undefined);
      throw err;
    }
    return true;
  }

  async get(code: string, query?: ClickStatsQuery): Promise<ClickStats> {
    await this.ensureSchema();
    const from = firstDay(query);
    const [totals, days, refs] = await Promise.all([
      this.cql.execute("SELECT human, bot FROM click_totals WHERE code = ?", [code], { idempotent: true }),
      this.cql.execute("SELECT day, human, bot FROM click_days WHERE code = ? AND day >= ?", [code, from], {
        idempotent: true,
      }),
      this.cql.execute("SELECT referrer, human FROM click_referrers WHERE code = ?", [code], { idempotent: true }),
    ]);
    const t = totals[0];
    const human = t ? num(t["human"]) : 0;
    const bot = t ? num(t["bot"]) : 0;
    return {
      total: human + bot,
      human,
      bot,
      perDay: days.map((r) => ({ day: String(r["day"]), human: num(r["human"]), bot: num(r["bot"]) })),
      perReferrer: refs
        .map((r) => ({ referrer: String(r["referrer"]), human: num(r["human"]) }))
        .filter((r) => r.human > 0)
        .sort((a, b) => b.human - a.human || (a.referrer < b.referrer ? -1 : 1))
        .slice(0, MAX_REFERRERS),
    };
  }
}

/** Counter columns come back as Long (or null when never incremented). */
function num(v: CqlRow[string]): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number") return v;
  return Number((v as { toString(): string }).toString());
}
