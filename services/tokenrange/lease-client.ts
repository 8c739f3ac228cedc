/**
 * Leasing client: serves counter values of one namespace in-process from leased ranges, with a
 * double buffer (Meituan Leaf segment mode).
 *
 * API
 *   const ids = createLeaseClient({ namespace: "links", source: directRangeSource(engine.coordinator) });
 *   await ids.ready();              // optional: waits for the first range
 *   const v = ids.next();           // bigint, or undefined when both buffers are empty (sync, never blocks)
 *   const w = await ids.nextAsync(); // value; waits for a range only when both buffers are empty
 *   const { skipped } = await ids.close(); // unserved remainder is counted as skipped
 *
 * - `next()` is synchronous: it serves from the current range; when `prefetchAt` (fraction, default
 *   0.1 = after 10% of the range is consumed, as Leaf) of the current range is used, the next range
 *   is fetched in the background. It returns undefined (and starts a fetch) only when both ranges
 *   are empty.
 * - `nextAsync()` resolves synchronously-fast from the buffer; otherwise it waits for the fetch
 *   (counted as a "wait"). If the source fails while both buffers are empty it rejects with
 *   Unavailable (ResourceExhausted when the namespace is exhausted, InvalidArgument for a bad
 *   namespace); buffered values keep being served while the source is down, and failed fetches
 *   are retried in the background with exponential backoff.
 * - Adaptive size (Leaf): each fetch compares the time since the previous fetch with
 *   `targetRangeMs` (default 15 min): shorter -> double the size (up to maxSize), longer than twice
 *   the target -> halve (down to minSize).
 * - Values are unique across every client of the namespace (ranges are disjoint); values of
 *   ranges abandoned by a crash or close are skipped, never reused.
 */
import { Counter, type Registry } from "prom-client";
import { DomainError, isDomainError } from "../../platform/errors.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { silentLog } from "../../platform/engines/log.js";
import { MAX_RANGE_SIZE } from "./domain/range-allocator.js";
import { validateNamespace } from "./domain/namespace.js";
import type { LeasedRange, RangeSource } from "./range-source.js";

export interface LeaseClientOptions {
  readonly namespace: string;
  readonly source: RangeSource;
  /** First range size (default 1,000). */
  readonly initialSize?: number;
  /** Adaptive bounds (default minSize = initialSize, maxSize = 1,000,000). */
  readonly minSize?: number;
  readonly maxSize?: number;
  /** Fraction of the current range consumed before the next one is prefetched (0..1, default 0.1). */
  readonly prefetchAt?: number;
  /** Desired lifetime of one range (default 15 min). */
  readonly targetRangeMs?: number;
  /** Retry backoff for failed background fetches (default 100 ms doubling to 5 s). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Metrics registry (counters labelled by namespace). */
  readonly registry?: Registry;
  readonly log?: EngineLog;
  readonly now?: () => number;
  /** Called with every range installed (tests/tools, e.g. to flush ids per range). */
  readonly onRange?: (range: LeasedRange) => void;
}

export interface LeaseClientStats {
  readonly rangesAcquired: number;
  readonly served: number;
  readonly skipped: number;
  readonly waits: number;
  readonly sourceErrors: number;
  /** Values currently buffered (current remainder + prefetched range). */
  readonly buffered: number;
  /** Size the next fetch will ask for. */
  readonly nextSize: number;
}

export interface LeaseClient {
  next(): bigint | undefined;
  nextAsync(): Promise<bigint>;
  ready(): Promise<void>;
  close(): Promise<{ skipped: number }>;
  stats(): LeaseClientStats;
}

export function createLeaseClient(options: LeaseClientOptions): LeaseClient {
  return new DoubleBufferLeaseClient(options);
}

interface Metric {
  acquired: Counter<"namespace">;
  served: Counter<"namespace">;
  skipped: Counter<"namespace">;
  waits: Counter<"namespace">;
  errors: Counter<"namespace">;
}
const flushers = new WeakMap<Registry, Set<() => void>>();

function counter(registry: Registry | undefined, name: string, help: string, collect?: () => void): Counter<"namespace"> {
  if (registry) {
    const existing = registry.getSingleMetric(name);
    if (existing) return existing as Counter<"namespace">;
  }
  return new Counter({
    name,
    help,
    labelNames: ["namespace"] as const,
    registers: registry ? [registry] : [],
    ...(collect ? { collect } : {}),
  });
}

function metricsFor(registry: Registry | undefined): Metric {
  let set = registry ? flushers.get(registry) : undefined;
  if (registry && !set) {
    set = new Set();
    flushers.set(registry, set);
  }
  const flushAll = () => set?.forEach((f) => f());
  return {
    acquired: counter(registry, "tokenrange_lease_ranges_acquired_total", "Counter ranges leased by this process."),
    served: counter(registry, "tokenrange_lease_ids_served_total", "Counter values handed out by lease clients.", flushAll),
    skipped: counter(registry, "tokenrange_lease_ids_skipped_total", "Leased values abandoned unserved (close/shutdown)."),
    waits: counter(registry, "tokenrange_lease_empty_waits_total", "Calls that waited because both buffers were empty."),
    errors: counter(registry, "tokenrange_lease_source_errors_total", "Failed range acquisitions."),
  };
}

class DoubleBufferLeaseClient implements LeaseClient {
  private base = 0n;
  private pos = 0;
  private len = 0;
  private prefetchPos = 0;
  private spare: LeasedRange | undefined;
  private fetching: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastFetchAt: number | undefined;
  private size: number;
  private failures = 0;
  private permanent: DomainError | undefined;
  private closed = false;
  private servedUnflushed = 0;
  private readonly s = { rangesAcquired: 0, served: 0, skipped: 0, waits: 0, sourceErrors: 0 };
  private readonly m: Metric;
  private readonly labels: { namespace: string };
  private readonly flush = () => {
    if (this.servedUnflushed > 0) {
      this.m.served.inc(this.labels, this.servedUnflushed);
      this.servedUnflushed = 0;
    }
  };
  private readonly minSize: number;
  private readonly maxSize: number;
  private readonly prefetchAt: number;
  private readonly targetMs: number;
  private readonly now: () => number;
  private readonly log: EngineLog;

  constructor(private readonly o: LeaseClientOptions) {
    validateNamespace(o.namespace);
    const max = Number(MAX_RANGE_SIZE);
    this.size = clampInt(o.initialSize ?? 1_000, 1, max, "initialSize");
    this.minSize = clampInt(o.minSize ?? this.size, 1, max, "minSize");
    this.maxSize = clampInt(o.maxSize ?? max, this.minSize, max, "maxSize");
    this.size = Math.min(Math.max(this.size, this.minSize), this.maxSize);
    const p = o.prefetchAt ?? 0.1;
    if (!(p >= 0 && p <= 1)) throw new DomainError("InvalidArgument", "prefetchAt must be in [0, 1]", { field: "prefetchAt" });
    this.prefetchAt = p;
    this.targetMs = o.targetRangeMs ?? 15 * 60_000;
    this.now = o.now ?? Date.now;
    this.log = (o.log ?? silentLog).child({ component: "lease-client", namespace: o.namespace });
    this.m = metricsFor(o.registry);
    this.labels = { namespace: o.namespace };
    if (o.registry) flushers.get(o.registry)!.add(this.flush);
  }

  next(): bigint | undefined {
    if (this.pos < this.len) {
      const v = this.base + BigInt(this.pos++);
      this.servedUnflushed++;
      this.s.served++;
      if (this.pos >= this.prefetchPos && this.spare === undefined && this.fetching === undefined) this.prefetch();
      return v;
    }
    if (this.spare) {
      this.install(this.spare);
      this.spare = undefined;
      return this.next();
    }
    if (!this.closed) this.prefetch();
    return undefined;
  }

  async nextAsync(): Promise<bigint> {
    const v = this.next();
    if (v !== undefined) return v;
    this.s.waits++;
    this.m.waits.inc(this.labels);
    for (;;) {
      if (this.closed) throw new DomainError("Unavailable", "lease client is closed");
      if (this.permanent) throw this.permanent;
      const f = this.fetching ?? this.fetch();
      try {
        await f;
      } catch (e) {
        if (isDomainError(e) && (e.kind === "ResourceExhausted" || e.kind === "InvalidArgument")) throw e;
        throw new DomainError("Unavailable", `no buffered ${this.o.namespace} ids and the range source failed: ${errMsg(e)}`, { retryAfterMs: 500 }, { cause: e });
      }
      const w = this.next();
      if (w !== undefined) return w;
    }
  }

  async ready(): Promise<void> {
    if (this.pos < this.len || this.spare) return;
    const v = await this.nextAsync();
    // Put it back: ready() does not consume.
    this.pos--;
    this.s.served--;
    this.servedUnflushed--;
    void v;
  }

  async close(): Promise<{ skipped: number }> {
    if (this.closed) return { skipped: this.s.skipped };
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.fetching) await this.fetching.catch(() => {});
    let skipped = this.len - this.pos;
    if (this.spare) skipped += Number(this.spare.end - this.spare.start);
    this.pos = this.len;
    this.spare = undefined;
    this.s.skipped += skipped;
    if (skipped > 0) this.m.skipped.inc(this.labels, skipped);
    this.flush();
    if (this.o.registry) flushers.get(this.o.registry)?.delete(this.flush);
    await this.o.source.close?.();
    return { skipped: this.s.skipped };
  }

  stats(): LeaseClientStats {
    return {
      ...this.s,
      buffered: this.len - this.pos + (this.spare ? Number(this.spare.end - this.spare.start) : 0),
      nextSize: this.size,
    };
  }

  private install(r: LeasedRange): void {
    this.flush();
    this.base = r.start;
    this.pos = 0;
    this.len = Number(r.end - r.start);
    this.prefetchPos = Math.min(this.len, Math.max(0, Math.floor(this.len * this.prefetchAt)));
    this.o.onRange?.(r);
  }

  private prefetch(): void {
    if (this.fetching || this.closed || this.permanent || this.retryTimer) return;
    this.fetch().catch(() => {});
  }

  private fetch(): Promise<void> {
    if (this.fetching) return this.fetching;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    const size = this.adapt();
    const p = (async () => {
      try {
        const r = await this.o.source.acquire(this.o.namespace, size);
        this.size = size;
        this.lastFetchAt = this.now();
        this.failures = 0;
        this.s.rangesAcquired++;
        this.m.acquired.inc(this.labels);
        if (this.closed) {
          const n = Number(r.end - r.start);
          this.s.skipped += n;
          this.m.skipped.inc(this.labels, n);
          return;
        }
        if (this.pos >= this.len && !this.spare) this.install(r);
        else this.spare = r;
      } catch (e) {
        this.s.sourceErrors++;
        this.m.errors.inc(this.labels);
        if (isDomainError(e) && (e.kind === "ResourceExhausted" || e.kind === "InvalidArgument")) {
          this.permanent = e;
        } else if (!this.closed) {
          const delay = Math.min((this.o.retryMinMs ?? 100) * 2 ** this.failures++, this.o.retryMaxMs ?? 5_000);
          this.log.warn({ err: e, retryInMs: delay }, "range fetch failed; serving from buffer, retrying");
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            if (!this.spare) this.prefetch();
          }, delay);
          this.retryTimer.unref();
        }
        throw e;
      } finally {
        this.fetching = undefined;
      }
    })();
    this.fetching = p;
    return p;
  }

  /** Leaf's rule: size doubles when the previous range lasted less than the target, halves above twice it. */
  private adapt(): number {
    if (this.lastFetchAt === undefined) return this.size;
    const lasted = this.now() - this.lastFetchAt;
    if (lasted < this.targetMs) return Math.min(this.size * 2, this.maxSize);
    if (lasted > 2 * this.targetMs) return Math.max(Math.floor(this.size / 2), this.minSize);
    return this.size;
  }
}

function clampInt(v: number, min: number, max: number, field: string): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new DomainError("InvalidArgument", `${field} must be an integer in [${min}, ${max}] (got ${v})`, { field });
  }
  return v;
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
