/**
 * ClickStatsStore port: aggregated click counters per link (written by the analytics consumer,
 * read by the shortener's GetLinkStats). Memory engine: an in-process store shared per engine;
 * cluster: Cassandra counter tables (see ./migrations.ts).
 *
 * - `record(click)` counts one click exactly once per `eventId`: a second record with the same
 *   eventId (JetStream redelivery) is a no-op and returns false. True when this call counted it.
 *   A click is "human" when `userAgentClass` is HUMAN and it is not a HEAD request; everything
 *   else (bots, previews, unknown user agents, HEAD) counts as "bot".
 * - `get(code, { days })` returns the totals plus the last `days` UTC days (default 30, max 366)
 *   ending today (ascending by day, only days with clicks), and the top referrers by human
 *   clicks (descending, at most 50; "" = no referrer / direct) over all time.
 *   Unknown code -> all zero / empty lists (no error).
 *
 * Errors: backend unreachable -> DomainError "Unavailable" (record: retry; dedupe makes it safe).
 */

export interface ClickRecord {
  /** Unique id of the click (ClickEvent.event_id); the dedupe key. */
  readonly eventId: string;
  readonly code: string;
  /** When the redirect was served. Its UTC date is the per-day bucket. */
  readonly time: Date;
  /** Referrer host, lower-cased; "" when absent. */
  readonly referrer: string;
  /** True when counted as a human click (human UA class and not HEAD). */
  readonly human: boolean;
}

export interface DayClicks {
  /** UTC day, "YYYY-MM-DD". */
  readonly day: string;
  readonly human: number;
  readonly bot: number;
}

export interface ReferrerClicks {
  /** Referrer host; "" = direct / none. */
  readonly referrer: string;
  readonly human: number;
}

export interface ClickStats {
  /** human + bot */
  readonly total: number;
  readonly human: number;
  readonly bot: number;
  readonly perDay: readonly DayClicks[];
  readonly perReferrer: readonly ReferrerClicks[];
}

export interface ClickStatsQuery {
  /** How many UTC days back from today (inclusive) to return in perDay; default 30. */
  readonly days?: number;
  /** "Today" for the day window (tests); default now. */
  readonly now?: Date;
}

export interface ClickStatsStore {
  /** Counts the click once per eventId; false when the eventId was already recorded. */
  record(click: ClickRecord): Promise<boolean>;
  get(code: string, query?: ClickStatsQuery): Promise<ClickStats>;
}

export { createClickStatsStore } from "./store.js";
