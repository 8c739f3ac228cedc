import type { ClickStatsQuery, CountryClicks } from "../ports.js";

export const DEFAULT_DAYS = 30;
export const MAX_DAYS = 366;
export const MAX_REFERRERS = 50;

let lastDayNumber = NaN;
let lastDay = "";

/** "YYYY-MM-DD" of a time in UTC (the last answer is cached: clicks come in time order). */
export function utcDay(t: Date): string {
  const n = Math.floor(t.getTime() / 86_400_000);
  if (n !== lastDayNumber) {
    lastDay = t.toISOString().slice(0, 10);
    lastDayNumber = n;
  }
  return lastDay;
}

/** The first UTC day (inclusive) of the query's window. */
export function firstDay(q: ClickStatsQuery | undefined): string {
  const days = Math.min(MAX_DAYS, Math.max(1, Math.floor(q?.days ?? DEFAULT_DAYS)));
  const now = q?.now ?? new Date();
  return utcDay(new Date(now.getTime() - (days - 1) * 86_400_000));
}

/** Countries by human clicks, most first (ties by code: the same order on both engines). */
export function byHumanClicks(countries: CountryClicks[]): CountryClicks[] {
  return countries.sort((a, b) => b.human - a.human || (a.country < b.country ? -1 : 1));
}
