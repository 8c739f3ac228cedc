/**
 * LinkStore port: the short-link table, shared by shortener (writes) and redirect (reads).
 *
 * - `insertIfAbsent(link)` stores the link only when no link has that code and no link stored
 *   through insertIfAbsent has it in another case (`foldCode`: "Bob-Secret-1" after
 *   "bob-secret-1" is refused, so look-alike aliases cannot coexist); atomic across processes
 *   (lightweight transactions in Cassandra), true when this call stored it. Deleting or expiry
 *   of the link frees its folded form. Used for custom aliases (and anything whose uniqueness
 *   is not guaranteed by construction).
 * - `insertUnique(link)` stores a link whose code is unique by construction (a generated code
 *   from a leased counter): a plain write, no compare. The caller guarantees nobody else writes
 *   that code (a second call with the same code overwrites).
 *   Both inserts also add the link to its owner's listing (`listByOwner`).
 * - `get(code)` returns the stored link, or undefined. Expired links are still returned (the
 *   redirect answers 410 Gone for them; `expiresAt` tells). Expired links are removed by the
 *   store `EXPIRED_RETENTION_MS` (30 days) after `expiresAt`.
 * - `update(next, expectedVersion)` replaces target/expiry/redirect type (every field of `next`
 *   except code, ownerId, createdAt and custom, which never change) only when the stored
 *   version equals `expectedVersion` (a link stored without a version counts as version 1).
 *   `next.version` should be expectedVersion + 1. Atomic compare (LWT in Cassandra).
 * - `delete(code, ownerId?)` removes the link (and its listing entry); with `ownerId`, only when
 *   the stored link has that owner. True when this call removed it.
 * - `listByOwner(ownerId, pageSize, pageToken?)`: the owner's links, newest first (createdAt
 *   descending, then code). A page may hold fewer than pageSize links (entries whose link is
 *   gone are skipped) and the last page may be empty. `nextPageToken` is absent at the end.
 *   A token is opaque, only valid for the same owner: anything else -> InvalidArgument
 *   (field "page_token").
 * - Idempotency keys, per (owner, key), kept `ttlMs` (24 h for the shortener):
 *   `reserveIdempotencyKey` stores {code, requestHash} only when the key is free (atomic) and
 *   returns the record now stored for the key (`reserved: true` when it is ours);
 *   `getIdempotencyKey` reads it; `releaseIdempotencyKey(owner, key, code)` frees the key only
 *   while it still points at `code` (a create that failed after reserving).
 *
 * Codes are case-sensitive for `get` (resolution). Errors: backend unreachable -> DomainError "Unavailable" (for
 * writes the outcome is then unknown: `get` tells whether it landed).
 */
export type RedirectType = 301 | 302;

export interface Link {
  readonly code: string;
  readonly longUrl: string;
  readonly ownerId: string;
  readonly createdAt: Date;
  readonly expiresAt?: Date;
  readonly redirectType: RedirectType;
  /** Last update; absent = createdAt (never updated, or written before versions existed). */
  readonly updatedAt?: Date;
  /** 1 on create, +1 per update; absent = 1. */
  readonly version?: number;
  /** True for custom aliases; absent = false. */
  readonly custom?: boolean;
}

export interface LinkPage {
  readonly links: readonly Link[];
  readonly nextPageToken?: string;
}

export interface IdempotencyRecord {
  readonly code: string;
  /** Hash of the request parameters; a replay with other parameters is refused. */
  readonly requestHash: string;
}

export type UpdateResult =
  | { readonly kind: "updated"; readonly link: Link }
  | { readonly kind: "not_found" }
  | { readonly kind: "version_mismatch" };

export interface LinkStore {
  insertIfAbsent(link: Link): Promise<boolean>;
  insertUnique(link: Link): Promise<void>;
  get(code: string): Promise<Link | undefined>;
  update(next: Link, expectedVersion: number): Promise<UpdateResult>;
  delete(code: string, ownerId?: string): Promise<boolean>;
  listByOwner(ownerId: string, pageSize: number, pageToken?: string): Promise<LinkPage>;
  reserveIdempotencyKey(
    ownerId: string,
    key: string,
    record: IdempotencyRecord,
    ttlMs: number,
  ): Promise<{ readonly reserved: boolean; readonly record: IdempotencyRecord }>;
  getIdempotencyKey(ownerId: string, key: string): Promise<IdempotencyRecord | undefined>;
  releaseIdempotencyKey(ownerId: string, key: string, code: string): Promise<void>;
}

/** How long an expired link is kept (so the redirect can answer 410 Gone) before removal. */
export const EXPIRED_RETENTION_MS = 30 * 24 * 3600 * 1000;

/** The case-insensitive identity of a code (ASCII lower case: codes are [A-Za-z0-9_-]). */
export const foldCode = (code: string): string => code.replace(/[A-Z]+/g, (m) => m.toLowerCase());

export const versionOf = (l: Link): number => l.version ?? 1;
export const updatedAtOf = (l: Link): Date => l.updatedAt ?? l.createdAt;

/** Row TTL in whole seconds for a link (0 = none): expiry + 30 days, at least 1 s. */
export function rowTtlSeconds(link: Link, now: number = Date.now()): number {
  if (!link.expiresAt) return 0;
  return Math.max(1, Math.ceil((link.expiresAt.getTime() + EXPIRED_RETENTION_MS - now) / 1000));
}
