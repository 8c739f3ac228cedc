/**
 * The redirect lookup chain, shared by the redirect gRPC service and the gateway's redirect door:
 *
 *   in-process LRU (bounded, TTL) -> engine.cache (Redis, TTL) -> LinkStore (database)
 *
 * Unknown codes are cached negatively (short TTL) at both levels. LinkChanged events on
 * `switchboard.links.changed.>` (from any process) drop the code from this LRU and fence it in
 * Redis; a lookup that was in flight while its code was invalidated does not repopulate the
 * caches. Concurrent misses for one code share one lookup. A failing Redis is skipped (the
 * database answers); a failing database surfaces as Unavailable.
 *
 * Invalidation that cannot be lost (services/links/shared-cache.ts): the shortener fences the
 * Redis entry before it acknowledges a change, and this chain fills Redis only with
 * setIfAbsent, so Redis never answers an old target after the acknowledgement. Events only
 * matter for the near-cache, and that is bounded: it is dropped whenever the bus connection
 * goes down or comes back (an event lost in between leaves nothing stale), and while the bus
 * is down its entries live at most `disconnectedLruTtlMs`.
 *
 * A code can be deleted and registered again by someone else: `ownerId` + `createdAtMs` name
 * one incarnation of a link (`version` restarts at 1), and a CREATED event always invalidates
 * (its version says nothing about an older incarnation that may still be cached).
 */
import { fromBinary } from "@bufbuild/protobuf";
import { LinkChangedSchema, LinkChangeKind } from "../../gen/switchboard/events/v1/events_pb.js";
import type { Cache } from "../../platform/ports/cache.js";
import type { EventBus, Unsubscribe } from "../../platform/ports/event-bus.js";
import type { LinkStore, RedirectType } from "../links/ports.js";
import { LINK_FENCE, LINK_FENCE_TTL_MS, LINK_KEY_PREFIX, MAX_FILL_AGE_MS } from "../links/shared-cache.js";
import { LINKS_CHANGED_ALL, LINKS_CHANGED_PREFIX } from "./subjects.js";

/** What a code resolves to. `expiresAt` is epoch ms (Infinity = never). */
export interface CachedLink {
  readonly found: true;
  readonly code: string;
  readonly longUrl: string;
  readonly redirectType: RedirectType;
  readonly expiresAt: number;
  readonly ownerId: string;
  /** Link.version (1 when the store has none). */
  readonly version: number;
  /** Link.createdAt, epoch ms: with ownerId, which incarnation of the code this is. */
  readonly createdAtMs: number;
}
export interface Missing {
  readonly found: false;
  readonly code: string;
}
export type Lookup = CachedLink | Missing;

export interface ResolverOptions {
  /** Near-cache capacity (entries). Default 100,000. */
  readonly lruMaxEntries?: number;
  /** Near-cache TTL for links. Default 60 s (invalidation is by event; the TTL bounds a lost one). */
  readonly lruTtlMs?: number;
  /** Near-cache TTL while the bus is disconnected (no event can reach us). Default 500 ms. */
  readonly disconnectedLruTtlMs?: number;
  /** Redis TTL for links. Default 1 h (safe: every change fences the entry before it is acknowledged). */
  readonly redisTtlMs?: number;
  /** TTL of negative entries (near-cache and Redis). Default 5 s. */
  readonly negativeTtlMs?: number;
  /** Redis key prefix. Default "sb:link:". */
  readonly keyPrefix?: string;
  readonly now?: () => number;
  readonly onError?: (what: string, err: unknown) => void;
}

export interface ResolverStats {
  lruHits: number;
  redisHits: number;
  dbHits: number;
  negative: number;
  invalidations: number;
  redisErrors: number;
}

interface Slot {
  value: Lookup;
  until: number;
}

export class LinkResolver {
  readonly stats: ResolverStats = { lruHits: 0, redisHits: 0, dbHits: 0, negative: 0, invalidations: 0, redisErrors: 0 };
  private readonly lru = new Map<string, Slot>();
  private readonly inflight = new Map<string, Promise<Lookup>>();
  /** code -> invalidation sequence number at its last invalidation (bounded). */
  private readonly invalidatedAt = new Map<string, number>();
  private seq = 0;
  private readonly max: number;
  private readonly lruTtl: number;
  private readonly redisTtl: number;
  private readonly negTtl: number;
  private readonly prefix: string;
  private readonly disconnectedLruTtl: number;
  /** False while the bus is known to be disconnected: events may be missed. */
  private busUp = true;
  private readonly now: () => number;
  private readonly onError: (what: string, err: unknown) => void;
  private unsubscribe: Unsubscribe | undefined;
  private unwatch: Unsubscribe | undefined;
  private readonly invalidationListeners = new Set<(code: string) => void>();

  constructor(
    private readonly cache: Cache,
    private readonly store: LinkStore,
    opts: ResolverOptions = {},
  ) {
    this.max = opts.lruMaxEntries ?? 100_000;
    this.lruTtl = opts.lruTtlMs ?? 60_000;
    this.redisTtl = opts.redisTtlMs ?? 3_600_000;
    this.negTtl = opts.negativeTtlMs ?? 5_000;
    this.prefix = opts.keyPrefix ?? LINK_KEY_PREFIX;
    this.disconnectedLruTtl = opts.disconnectedLruTtlMs ?? 500;
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError ?? (() => {});
  }

  /** Subscribes to LinkChanged on the bus (call once; `close` unsubscribes). */
  listen(bus: EventBus): this {
    this.unsubscribe ??= bus.subscribe(LINKS_CHANGED_ALL, (msg) => {
      let code = msg.subject.slice(LINKS_CHANGED_PREFIX.length);
      let version = 0;
      try {
        const ev = fromBinary(LinkChangedSchema, msg.data);
        if (ev.code) code = ev.code;
        // A new link under the code: whatever is cached is another incarnation, whatever its version.
        version = ev.kind === LinkChangeKind.CREATED ? 0 : Number(ev.version);
      } catch (e) {
        this.onError("decode LinkChanged", e);
      }
      this.invalidate(code, version);
    });
    this.unwatch ??= bus.onConnectionChange?.((up) => {
      // Whatever changed while we could not hear about it may be cached here: forget it all.
      this.busUp = up;
      this.clearNearCache();
    });
    return this;
  }

  /**
   * Called after every invalidation that dropped a code (event or direct call), once the
   * caches no longer hold it: a resolve() from the listener reads the new state.
   */
  onInvalidate(listener: (code: string) => void): () => void {
    this.invalidationListeners.add(listener);
    return () => this.invalidationListeners.delete(listener);
  }

  /** Near-cache only, synchronous: the hit path of the door. undefined = not cached here. */
  peek(code: string): Lookup | undefined {
    const slot = this.lru.get(code);
    if (slot === undefined) return undefined;
    if (slot.until <= this.now()) {
      this.lru.delete(code);
      return undefined;
    }
    // Refresh recency (Map keeps insertion order: the first key is the least recently used).
    this.lru.delete(code);
    this.lru.set(code, slot);
    this.stats.lruHits++;
    return slot.value;
  }

  /** Full chain. Rejects only when the database is unreachable (DomainError Unavailable). */
  resolve(code: string): Promise<Lookup> {
    const hit = this.peek(code);
    if (hit !== undefined) return Promise.resolve(hit);
    let p = this.inflight.get(code);
    if (p === undefined) {
      p = this.fetch(code).finally(() => this.inflight.delete(code));
      this.inflight.set(code, p);
    }
    return p;
  }

  /**
   * Drops the code here and fences it in Redis (a delete would let another reader's late fill
   * back in). With `version` (from LinkChanged), an event older than the near-cached link
   * (version < cached) is ignored.
   */
  invalidate(code: string, version = 0): void {
    const slot = this.lru.get(code);
    if (version > 0 && slot?.value.found && slot.value.version > version) return;
    this.stats.invalidations++;
    this.lru.delete(code);
    this.inflight.delete(code);
    this.invalidatedAt.delete(code);
    this.invalidatedAt.set(code, ++this.seq);
    if (this.invalidatedAt.size > 10_000) {
      const oldest = this.invalidatedAt.keys().next().value;
      if (oldest !== undefined) this.invalidatedAt.delete(oldest);
    }
    this.redisFence(code);
    for (const listener of this.invalidationListeners) {
      try {
        listener(code);
      } catch (e) {
        this.onError("invalidation listener", e);
      }
    }
  }

  /** Drops every near-cache entry (tests, benchmarks). */
  clearNearCache(): void {
    this.lru.clear();
  }

  get size(): number {
    return this.lru.size;
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
    this.invalidationListeners.clear();
  }

  private async fetch(code: string): Promise<Lookup> {
    const startSeq = this.seq;
    const startedAt = this.now();
    const key = this.prefix + code;
    let cached: string | undefined;
    try {
      cached = await this.cache.get(key);
    } catch (e) {
      this.stats.redisErrors++;
      this.onError("redis get", e);
    }
    // Fenced: changed moments ago; the database answers and nothing is written back.
    const fenced = cached === LINK_FENCE;
    if (cached !== undefined && !fenced) {
      const v = decode(code, cached);
      if (v !== undefined) {
        this.stats.redisHits++;
        if (!v.found) this.stats.negative++;
        if (!this.invalidatedSince(code, startSeq)) this.remember(v);
        return v;
      }
    }
    const link = await this.store.get(code);
    const v: Lookup = link
      ? {
          found: true,
          code,
          longUrl: link.longUrl,
          redirectType: link.redirectType,
          expiresAt: link.expiresAt ? link.expiresAt.getTime() : Infinity,
          ownerId: link.ownerId,
          version: link.version ?? 1,
          createdAtMs: link.createdAt.getTime(),
        }
      : { found: false, code };
    if (v.found) this.stats.dbHits++;
    else this.stats.negative++;
    if (!this.invalidatedSince(code, startSeq)) {
      this.remember(v);
      if (!fenced && this.now() - startedAt < MAX_FILL_AGE_MS) {
        // setIfAbsent: a fence written since our read wins. An undecodable (older format) entry is replaced.
        const ttl = v.found ? this.redisTtl : this.negTtl;
        const write = cached === undefined ? this.cache.setIfAbsent(key, encode(v), ttl) : this.cache.set(key, encode(v), ttl);
        write.catch((e: unknown) => {
          this.stats.redisErrors++;
          this.onError("redis set", e);
        });
      }
    }
    return v;
  }

  private invalidatedSince(code: string, startSeq: number): boolean {
    const s = this.invalidatedAt.get(code);
    return s !== undefined && s > startSeq;
  }

  private remember(v: Lookup): void {
    this.lru.delete(v.code);
    const ttl = Math.min(v.found ? this.lruTtl : this.negTtl, this.busUp ? Infinity : this.disconnectedLruTtl);
    this.lru.set(v.code, { value: v, until: this.now() + ttl });
    if (this.lru.size > this.max) {
      const oldest = this.lru.keys().next().value;
      if (oldest !== undefined) this.lru.delete(oldest);
    }
  }

  private redisFence(code: string): void {
    this.cache.set(this.prefix + code, LINK_FENCE, LINK_FENCE_TTL_MS).catch((e: unknown) => {
      this.stats.redisErrors++;
      this.onError("redis fence", e);
    });
  }
}

/**
 * Redis value: "-" for a negative entry, else JSON [longUrl, redirectType, expiresAt|null, ownerId,
 * version, createdAtMs]. An entry without createdAtMs (written by an older process) is a miss:
 * the database answers and the entry is rewritten whole.
 */
export function encode(v: Lookup): string {
  if (!v.found) return "-";
  return JSON.stringify([
    v.longUrl,
    v.redirectType,
    Number.isFinite(v.expiresAt) ? v.expiresAt : null,
    v.ownerId,
    v.version,
    v.createdAtMs,
  ]);
}

export function decode(code: string, s: string): Lookup | undefined {
  if (s === "-") return { found: false, code };
  try {
    const a = JSON.parse(s) as unknown;
    if (!Array.isArray(a) || typeof a[0] !== "string" || (a[1] !== 301 && a[1] !== 302)) return undefined;
    if (typeof a[5] !== "number" || !Number.isFinite(a[5])) return undefined;
    return {
      found: true,
      code,
      longUrl: a[0],
      redirectType: a[1] as RedirectType,
      expiresAt: typeof a[2] === "number" ? a[2] : Infinity,
      ownerId: typeof a[3] === "string" ? a[3] : "",
      version: typeof a[4] === "number" ? a[4] : 1,
      createdAtMs: a[5],
    };
  } catch {
    return undefined;
  }
}
