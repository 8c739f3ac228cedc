/** Pure helpers of per-batch recording: the batch's identity and its per-code deltas. */
import { createHash } from "node:crypto";
import type { ClickRecord, ConsumerProgress } from "./ports.js";
import { utcDay } from "./adapters/window.js";

/**
 * A batch's id from its clicks' event ids (in order): a gateway republishes a batch with the same
 * bytes, so a republish that JetStream did not dedupe (beyond its duplicate window) has the same
 * id, while its stream seq differs. 128 bits of SHA-256: collisions are not a concern.
 */
export function clickBatchId(eventIds: readonly string[]): string {
  return createHash("sha256").update(eventIds.join("\n")).digest("base64url").slice(0, 22);
}

/** One code's share of a batch, summed per (day, referrer) before anything is written. */
export interface CodeDelta {
  human: number;
  bot: number;
  readonly humanDays: Map<string, number>;
  readonly botDays: Map<string, number>;
  /** Human clicks per referrer host ("" = direct). */
  readonly referrers: Map<string, number>;
  /** Human clicks per known country. */
  readonly countries: Map<string, number>;
}

/** Sums a batch's clicks per code, day, referrer and country. */
export function aggregateClicks(clicks: readonly ClickRecord[]): Map<string, CodeDelta> {
  const out = new Map<string, CodeDelta>();
  for (const c of clicks) {
    let d = out.get(c.code);
    if (!d) out.set(c.code, (d = { human: 0, bot: 0, humanDays: new Map(), botDays: new Map(), referrers: new Map(), countries: new Map() }));
    const day = utcDay(c.time);
    if (c.human) {
      d.human++;
      d.humanDays.set(day, (d.humanDays.get(day) ?? 0) + 1);
      d.referrers.set(c.referrer, (d.referrers.get(c.referrer) ?? 0) + 1);
      if (c.country !== "") d.countries.set(c.country, (d.countries.get(c.country) ?? 0) + 1);
    } else {
      d.bot++;
      d.botDays.set(day, (d.botDays.get(day) ?? 0) + 1);
    }
  }
  return out;
}

/** The report to show as freshness when several durables report: the most recent one. */
export function latestProgress(reports: Iterable<ConsumerProgress>): ConsumerProgress | undefined {
  let best: ConsumerProgress | undefined;
  for (const p of reports) if (!best || p.at.getTime() > best.at.getTime()) best = p;
  return best;
}
