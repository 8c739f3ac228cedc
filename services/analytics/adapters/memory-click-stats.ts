import { unavailable } from "../../../platform/errors.js";
import { latestProgress } from "../batch.js";
import type {
  ClickBatchRef,
  ClickRecord,
  ClickStats,
  ClickStatsQuery,
  ClickStatsStore,
  ConsumerProgress,
  RecordBatchResult,
} from "../ports.js";
import { byHumanClicks, firstDay, MAX_REFERRERS, utcDay } from "./window.js";

interface Counters {
  human: number;
  bot: number;
  days: Map<string, { human: number; bot: number }>;
  referrers: Map<string, number>;
  countries: Map<string, number>;
}

/** Batch ids remembered per generation (two generations are kept: 250k batches ~ 125M clicks). */
const CLAIM_GENERATION = 250_000;

/**
 * In-process twin of the Cassandra store (memory engine and tests). Recording into memory is
 * atomic, so a batch is applied whole the first time its id is seen; the claim (id -> seq) is
 * what tells a redelivery or a retry (same seq: reported as counted again) from a republish
 * (another seq: duplicate). Claims are bounded: a batch id older than two generations is
 * forgotten (the memory bus never redelivers that late).
 */
export class MemoryClickStatsStore implements ClickStatsStore {
  private newer = new Map<string, { seq: number; counted: number }>();
  private older = new Map<string, { seq: number; counted: number }>();
  private readonly byCode = new Map<string, Counters>();
  private readonly progress = new Map<string, ConsumerProgress>();
  private failNextAfterWrite = false;

  /** Test hook: the next recordBatch applies its writes, then fails as a write timeout would. */
  failNextRecordAfterWrite(): void {
    this.failNextAfterWrite = true;
  }

  async recordBatch(batch: ClickBatchRef, clicks: readonly ClickRecord[]): Promise<RecordBatchResult> {
    const claim = this.newer.get(batch.id) ?? this.older.get(batch.id);
    if (claim) return claim.seq === batch.seq ? { counted: claim.counted, duplicate: false } : { counted: 0, duplicate: true };
    if (this.newer.size >= CLAIM_GENERATION) {
      this.older = this.newer;
      this.newer = new Map();
    }
    this.newer.set(batch.id, { seq: batch.seq, counted: clicks.length });
    // Counted click by click: memory needs no per-batch deltas (the Cassandra store sums them
    // first to write each counter once), and building them was most of this store's cost.
    for (const click of clicks) {
      let c = this.byCode.get(click.code);
      if (!c) this.byCode.set(click.code, (c = { human: 0, bot: 0, days: new Map(), referrers: new Map(), countries: new Map() }));
      const day = this.day(c, utcDay(click.time));
      if (click.human) {
        c.human++;
        day.human++;
        c.referrers.set(click.referrer, (c.referrers.get(click.referrer) ?? 0) + 1);
        if (click.country !== "") c.countries.set(click.country, (c.countries.get(click.country) ?? 0) + 1);
      } else {
        c.bot++;
        day.bot++;
      }
    }
    if (this.failNextAfterWrite) {
      this.failNextAfterWrite = false;
      throw unavailable("memory click stats (injected: applied, then timed out)");
    }
    return { counted: clicks.length, duplicate: false };
  }

  // Totals here are current at once: a report never has anything to fold.
  async reportProgress(p: ConsumerProgress, _options?: { readonly fold?: boolean }): Promise<void> {
    this.progress.set(p.durable, p);
  }

  async get(code: string, query?: ClickStatsQuery): Promise<ClickStats> {
    const freshness = latestProgress(this.progress.values());
    const c = this.byCode.get(code);
    if (!c) return { total: 0, human: 0, bot: 0, perDay: [], perReferrer: [], perCountry: [], ...(freshness ? { freshness } : {}) };
    const from = firstDay(query);
    const perDay = [...c.days]
      .filter(([day]) => day >= from)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([day, v]) => ({ day, human: v.human, bot: v.bot }));
    const perReferrer = [...c.referrers]
      .map(([referrer, human]) => ({ referrer, human }))
      .sort((a, b) => b.human - a.human || (a.referrer < b.referrer ? -1 : 1))
      .slice(0, MAX_REFERRERS);
    const perCountry = byHumanClicks([...c.countries].map(([country, human]) => ({ country, human })));
    return { total: c.human + c.bot, human: c.human, bot: c.bot, perDay, perReferrer, perCountry, ...(freshness ? { freshness } : {}) };
  }

  private day(c: Counters, day: string): { human: number; bot: number } {
    let d = c.days.get(day);
    if (!d) c.days.set(day, (d = { human: 0, bot: 0 }));
    return d;
  }
}
