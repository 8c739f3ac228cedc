/**
 * Namespace rules shared by the range allocator and the worker-id registry.
 *
 * A namespace is 1..63 chars, `^[a-z][a-z0-9_-]{0,62}$` (also a valid znode name).
 * Policies: a namespace may have an upper bound (exclusive) on its counter; `links` is bounded
 * by 62^7 (7 base62 chars). A namespace without a policy is unbounded below 2^64 - 1 (the
 * counter never wraps: it stops with ResourceExhausted). Any valid name is accepted; no
 * registration step is needed (the counter znode is created on the first AcquireRange).
 */
import { DomainError, invalidArgument } from "../../../platform/errors.js";

export const NAMESPACE_RE = /^[a-z][a-z0-9_-]{0,62}$/;

/** 62^7 = 3,521,614,606,208: every 7-char base62 code. */
export const CODE_SPACE = 62n ** 7n;
/** Largest end of a range (uint64 max; the value itself is never handed out). */
export const U64_MAX = (1n << 64n) - 1n;

/** Default per-namespace upper bounds (exclusive). */
export const DEFAULT_NAMESPACE_LIMITS: Readonly<Record<string, bigint>> = { links: CODE_SPACE };

export function validateNamespace(ns: string, field = "namespace"): string {
  if (ns.length === 0) throw invalidArgument(field, "is required");
  if (ns.length > 63) throw invalidArgument(field, `must be at most 63 characters (got ${ns.length})`);
  if (!NAMESPACE_RE.test(ns)) {
    throw invalidArgument(field, `must match ^[a-z][a-z0-9_-]{0,62}$ (got "${ns.slice(0, 80)}")`);
  }
  return ns;
}

export const resourceExhausted = (msg: string): DomainError => new DomainError("ResourceExhausted", msg);
