/**
 * Cache port: a shared key/value cache with TTLs (Redis in cluster mode, a map in memory mode).
 *
 * Semantics every adapter honours (see cache.conformance.ts):
 * - Keys and values are strings. A value is visible to `get` until its TTL has elapsed, then
 *   `get` returns undefined. TTLs are whole milliseconds and must be > 0.
 * - `set` overwrites and resets the TTL; `setIfAbsent` writes only when the key is absent
 *   (or expired) and returns whether it wrote.
 * - `increment(key, windowTtlMs)` is atomic across all processes sharing the backend: it adds 1
 *   and returns the new count; the first increment of a key starts its window (TTL), later
 *   increments in the window do not extend it. That is a fixed-window rate-limit counter.
 * - `delete` of a missing key is not an error.
 *
 * Errors: an unreachable backend fails fast with DomainError kind "Unavailable" (never hangs,
 * never crashes the process); a bad argument (empty key, TTL <= 0) is "InvalidArgument".
 */
export interface Cache {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Writes only when absent; true when this call wrote the value. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** Atomic fixed-window counter; returns the count including this call. */
  increment(key: string, windowTtlMs: number): Promise<number>;
}
