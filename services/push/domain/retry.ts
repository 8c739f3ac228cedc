/**
 * When a notification is tried again after a retryable answer: exponential backoff with "equal"
 * jitter (half fixed, half random: the workers of a mesh do not hit a recovering provider in step), never sooner than
 * the provider's own Retry-After, never later than the maximum.
 */
export interface RetryPolicy {
  /** The first retry waits up to this long. */
  readonly baseMs: number;
  /** No retry waits longer than this (a Retry-After beyond it included). */
  readonly maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 1_000, maxMs: 5 * 60_000 };

/**
 * The delay before delivery number `attempt + 1` (attempt = deliveries so far, from 1).
 * `random` in [0, 1) picks the jitter.
 */
export function retryDelayMs(attempt: number, retryAfterMs: number | undefined, policy: RetryPolicy, random: number): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  const jittered = Math.floor(ceiling / 2 + (ceiling / 2) * random);
  const floor = retryAfterMs !== undefined && retryAfterMs > 0 ? retryAfterMs : 0;
  return Math.min(policy.maxMs, Math.max(jittered, floor));
}
