/**
 * Sliding-window limiter for typing indicators: at most `limit` per key per `windowMs`. Pure (time
 * comes in); memory stays bounded because keys idle for a whole window are swept.
 */
export class SlidingWindowLimiter {
  private readonly hits = new Map<string, number[]>();
  private lastSweep = 0;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** 0 when allowed (and counted), else the ms until the oldest hit leaves the window. */
  take(key: string, nowMs: number): number {
    this.sweep(nowMs);
    const from = nowMs - this.windowMs;
    const list = (this.hits.get(key) ?? []).filter((t) => t > from);
    if (list.length >= this.limit) {
      this.hits.set(key, list);
      return Math.max(1, list[0]! + this.windowMs - nowMs);
    }
    list.push(nowMs);
    this.hits.set(key, list);
    return 0;
  }

  get size(): number {
    return this.hits.size;
  }

  private sweep(nowMs: number): void {
    if (nowMs - this.lastSweep < this.windowMs) return;
    this.lastSweep = nowMs;
    for (const [k, list] of this.hits) if ((list.at(-1) ?? 0) <= nowMs - this.windowMs) this.hits.delete(k);
  }
}
