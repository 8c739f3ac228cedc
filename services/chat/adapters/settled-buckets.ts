/**
 * A channel's non-empty time buckets, without reading the bucket index on every history page,
 * Sync or unread count.
 *
 * A bucket can still gain rows while a write may carry an id from its time span: a send's id is
 * minted on arrival and written within seconds, but a retry may heal a claimed message that never
 * landed, with its original id, for as long as the claim lives (`settleMs`, the claim TTL plus
 * clock skew between servers). Once a bucket ended longer ago than that, no write can reach it any
 * more: the index rows of such "settled" buckets are read once per channel and kept. The buckets
 * that are still open (at most two or three: the current one, the one before it for a day after
 * a boundary, the next one within the skew) are not looked up at all: reads treat them as
 * possibly non-empty and read them directly, which costs a read of an empty partition when they
 * are empty, about what the index read cost, and saves that read on every page of a busy channel.
 *
 * Expired buckets (retention) may stay listed: reading them finds no rows. When a bucket
 * settles after the channel was cached, the next call reads the index again.
 *
 * What this relies on: no server mints ids more than `skewMs` away from true time. A server whose
 * clock is off by more could write into a bucket another process already cached as settled, and
 * that process would not see those messages until its next index read (the next bucket to settle).
 */
export interface BucketEntry {
  readonly bucket: number;
  readonly messages: boolean;
  readonly changes: boolean;
}

export interface SettledBucketsOptions {
  readonly bucketMs: number;
  /** How long after its end a bucket can still gain rows (claim TTL + clock skew). */
  readonly settleMs: number;
  /** How far ahead of this clock another server's ids may be. */
  readonly skewMs: number;
  /** Channels remembered; the least recently used is forgotten beyond it. */
  readonly maxChannels: number;
  readonly now?: () => number;
}

interface Cached {
  /** First bucket that was still open when `settled` was read. */
  readonly openFrom: number;
  readonly settled: readonly BucketEntry[];
}

export class SettledBuckets {
  private readonly channels = new Map<string, Cached>();
  /** Index reads in flight, so that concurrent first reads of a channel share one. */
  private readonly loading = new Map<string, Promise<Cached>>();
  private readonly now: () => number;

  constructor(private readonly opts: SettledBucketsOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * The buckets a read must consider, ascending: the settled non-empty ones (from the index, read
   * through `loadIndex` when not cached) and then every open bucket, flagged as possibly holding
   * both messages and changes.
   */
  async buckets(channelId: string, loadIndex: () => Promise<readonly BucketEntry[]>): Promise<BucketEntry[]> {
    const now = this.now();
    const openFrom = Math.floor((now - this.opts.settleMs) / this.opts.bucketMs);
    const newest = Math.floor((now + this.opts.skewMs) / this.opts.bucketMs);
    let cached = this.channels.get(channelId);
    if (cached && cached.openFrom === openFrom) {
      // Most recently used last: Map iteration order is the eviction order.
      this.channels.delete(channelId);
      this.channels.set(channelId, cached);
    } else {
      cached = await this.load(channelId, openFrom, loadIndex);
    }
    const out: BucketEntry[] = [...cached.settled];
    // From the cached boundary, not this call's: a load shared with a call made just before a
    // bucket settled listed only the buckets settled by then.
    for (let b = cached.openFrom; b <= newest; b++) out.push({ bucket: b, messages: true, changes: true });
    return out;
  }

  /**
   * A write of this process into `bucket`. Only a bucket that had already settled changes what is
   * cached (a seeding tool or a test writing old ids); a live write lands in an open bucket.
   */
  noteWrite(channelId: string, bucket: number, kind: "messages" | "changes"): void {
    const cached = this.channels.get(channelId);
    if (!cached || bucket >= cached.openFrom) return;
    const i = cached.settled.findIndex((e) => e.bucket >= bucket);
    const at = cached.settled[i];
    if (at?.bucket === bucket && at[kind]) return;
    const settled = [...cached.settled];
    if (at?.bucket === bucket) settled[i] = { ...at, [kind]: true };
    else settled.splice(i < 0 ? settled.length : i, 0, { bucket, messages: kind === "messages", changes: kind === "changes" });
    this.channels.set(channelId, { openFrom: cached.openFrom, settled });
  }

  private load(channelId: string, openFrom: number, loadIndex: () => Promise<readonly BucketEntry[]>): Promise<Cached> {
    const pending = this.loading.get(channelId);
    if (pending) return pending;
    const p = loadIndex()
      .then((entries) => {
        const cached: Cached = { openFrom, settled: entries.filter((e) => e.bucket < openFrom && (e.messages || e.changes)) };
        this.channels.delete(channelId);
        this.channels.set(channelId, cached);
        if (this.channels.size > this.opts.maxChannels) this.channels.delete(this.channels.keys().next().value!);
        return cached;
      })
      .finally(() => this.loading.delete(channelId));
    this.loading.set(channelId, p);
    return p;
  }
}
