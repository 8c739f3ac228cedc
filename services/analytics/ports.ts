/**
 * ClickStatsStore port: aggregated click counters per link (written by the analytics consumer,
 * read by the shortener's GetLinkStats). Memory engine: an in-process store shared per engine;
 * cluster: Cassandra/ScyllaDB (see ./adapters/cassandra-click-stats.ts for why it is built from
 * idempotent per-batch delta rows and not counters).
 *
 * - `recordBatch(batch, clicks)` counts the clicks of one CLICKS stream message exactly once per
 *   `batch.id`, however often and however concurrently it is called with that batch:
 *   - `batch.id` is derived from the content (the clicks' event ids), so a redelivery AND a
 *     republish of the same clicks under a new stream sequence have the same id;
 *   - `batch.seq` is the message's stream sequence (the same on every redelivery);
 *   - a call that failed (e.g. a write timeout that may or may not have applied) is simply
 *     repeated with the same arguments: its effect is counted once;
 *   - two consumers racing on the same batch count it once;
 *   - the same id under another seq (a republish) counts nothing: `{ duplicate: true }`.
 *   Callers must not reuse a batch id for other clicks. Within a batch, clicks are not deduped
 *   against each other (one gateway never repeats an event id in a batch) nor against other
 *   batches (a batch is the unit of dedupe).
 *   A click is "human" when `userAgentClass` is HUMAN and it is not a HEAD request; everything
 *   else (bots, previews, unknown user agents, HEAD) counts as "bot".
 * - `reportProgress(p)` tells the store how far the consumer has got: every batch with
 *   `seq <= p.ackFloorSeq` has been recorded (its message acked), so the store may fold those
 *   batches into its totals; the lag figures are kept for `get().freshness`. With
 *   `{ fold: false }` only the lag figures are kept (the totals need not move on).
 * - `get(code, { days })` returns the totals plus the last `days` UTC days (default 30, max 366)
 *   ending today (ascending by day, only days with clicks), and the top referrers by human
 *   clicks (descending, at most 50; "" = no referrer / direct) over all time, the countries by
 *   human clicks (descending; known countries only) over all time, with `freshness`:
 *   the consumer's last progress report (undefined before the first). Every batch with
 *   `seq <= ackFloorSeq` of a folding `reportProgress` that has resolved is in the answer; a batch
 *   recorded but not yet reported may or may not be (memory: at once; Cassandra: after the
 *   next fold, with `asOf` saying up to when).
 *   Unknown code -> all zero / empty lists (no error).
 *
 * Errors: backend unreachable -> DomainError "Unavailable" (recordBatch: retry with the same
 * arguments; that is always safe).
 */

export interface ClickRecord {
  /** Unique id of the click (ClickEvent.event_id). */
  readonly eventId: string;
  readonly code: string;
  /** When the redirect was served. Its UTC date is the per-day bucket. */
  readonly time: Date;
  /** Referrer host, lower-cased; "" when absent. */
  readonly referrer: string;
  /** True when counted as a human click (human UA class and not HEAD). */
  readonly human: boolean;
  /** ISO 3166-1 alpha-2 country; "" when unknown. */
  readonly country: string;
}

/** One CLICKS stream message as the unit of exactly-once recording. */
export interface ClickBatchRef {
  /** Content-derived (see clickBatchId): equal for a redelivery and for a republish. */
  readonly id: string;
  /** The message's stream sequence, >= 1: equal on redelivery, different on a republish. */
  readonly seq: number;
}

export interface RecordBatchResult {
  /** Clicks this batch contributes (0 when `duplicate`). Repeated calls report the same. */
  readonly counted: number;
  /** The batch id was already recorded under another seq: nothing counted. */
  readonly duplicate: boolean;
}

/** Consumer lag as last reported (JetStream consumer info of the durable). */
export interface ConsumerProgress {
  /** Durable consumer name. */
  readonly durable: string;
  /** Every message with seq <= this has been recorded and acked (JetStream ack floor). */
  readonly ackFloorSeq: number;
  /** Messages not yet delivered (num_pending) + delivered but not acked (num_ack_pending). */
  readonly pendingMessages: number;
  /** pendingMessages x the average clicks per message seen lately (an estimate). */
  readonly pendingClicks: number;
  /** Publish time of the oldest message not yet recorded; undefined when none is pending. */
  readonly oldestPending: Date | undefined;
  /** When this was measured. */
  readonly at: Date;
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

export interface CountryClicks {
  /** ISO 3166-1 alpha-2 code. */
  readonly country: string;
  readonly human: number;
}

export interface ClickStats {
  /** human + bot */
  readonly total: number;
  readonly human: number;
  readonly bot: number;
  readonly perDay: readonly DayClicks[];
  readonly perReferrer: readonly ReferrerClicks[];
  /** Human clicks per known country, most first (clicks of unknown country are not listed). */
  readonly perCountry: readonly CountryClicks[];
  /** The consumer's last lag report; undefined before any. */
  readonly freshness?: ConsumerProgress;
  /**
   * Every click published before this time is in the numbers (a store that rolls batches up
   * behind the ack floor); undefined when the store counts each batch as soon as it is recorded
   * (then the freshness report tells how far the consumer is).
   */
  readonly asOf?: Date;
}

export interface ClickStatsQuery {
  /** How many UTC days back from today (inclusive) to return in perDay; default 30. */
  readonly days?: number;
  /** "Today" for the day window (tests); default now. */
  readonly now?: Date;
}

export interface ClickStatsStore {
  /** Counts the batch's clicks once per batch id (see above); safe to repeat after any error. */
  recordBatch(batch: ClickBatchRef, clicks: readonly ClickRecord[]): Promise<RecordBatchResult>;
  /** Consumer progress: lets the store fold recorded batches (unless `fold: false`) and answer `freshness`. */
  reportProgress(progress: ConsumerProgress, options?: { readonly fold?: boolean }): Promise<void>;
  get(code: string, query?: ClickStatsQuery): Promise<ClickStats>;
}

export { createClickStatsStore } from "./store.js";
