import type { ClickRecord, ClickStats, ClickStatsQuery, ClickStatsStore } from "../ports.js";
import { RecentIds } from "./recent-ids.js";
import { firstDay, MAX_REFERRERS, utcDay } from "./window.js";

// One settled promise per answer instead of one per click (the consumer records every click).
const COUNTED = Promise.resolve(true);
const DUPLICATE = Promise.resolve(false);

interface Counters {
  human: number;
  bot: number;
  days: Map<string, { human: number; bot: number }>;
  referrers: Map<string, number>;
}

/** In-process twin of the Cassandra counters (memory engine and tests). */
export class MemoryClickStatsStore implements ClickStatsStore {
  private readonly seen = new RecentIds();
  private readonly byCode = new Map<string, Counters>();

  record(click: ClickRecord): Promise<boolean> {
    if (!this.seen.add(click.eventId)) return DUPLICATE;
    let c = this.byCode.get(click.code);
    if (!c) {
      c = { human: 0, bot: 0, days: new Map(), referrers: new Map() };
      this.byCode.set(click.code, c);
    }
    const day = utcDay(click.time);
    let d = c.days.get(day);
    if (!d) c.days.set(day, (d = { human: 0, bot: 0 }));
    if (click.human) {
      c.human++;
      d.human++;
      c.referrers.set(click.referrer, (c.referrers.get(click.referrer) ?? 0) + 1);
    } else {
      c.bot++;
      d.bot++;
    }
    return COUNTED;
  }

  async get(code: string, query?: ClickStatsQuery): Promise<ClickStats> {
    const c = this.byCode.get(code);
    if (!c) return { total: 0, human: 0, bot: 0, perDay: [], perReferrer: [] };
    const from = firstDay(query);
    const perDay = [...c.days]
      .filter(([day]) => day >= from)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([day, v]) => ({ day, human: v.human, bot: v.bot }));
    const perReferrer = [...c.referrers]
      .map(([referrer, human]) => ({ referrer, human }))
      .sort((a, b) => b.human - a.human || (a.referrer < b.referrer ? -1 : 1))
      .slice(0, MAX_REFERRERS);
    return { total: c.human + c.bot, human: c.human, bot: c.bot, perDay, perReferrer };
  }
}
