/**
 * LinkStore port: the short-link table, shared by shortener (writes) and redirect (reads).
 *
 * - `insertIfAbsent(link)` stores the link only when no link has that code (atomic across
 *   processes: a lightweight transaction in Cassandra); true when this call stored it.
 * - `get(code)` returns the stored link, or undefined. Expired links are still returned (the
 *   redirect answers 410 Gone for them; `expiresAt` tells).
 * - `delete(code)` removes it; true when there was one.
 *
 * Codes are case-sensitive. Errors: backend unreachable -> DomainError "Unavailable" (for
 * insertIfAbsent the outcome is then unknown: `get` tells whether it landed).
 */
export type RedirectType = 301 | 302;

export interface Link {
  readonly code: string;
  readonly longUrl: string;
  readonly ownerId: string;
  readonly createdAt: Date;
  readonly expiresAt?: Date;
  readonly redirectType: RedirectType;
}

export interface LinkStore {
  insertIfAbsent(link: Link): Promise<boolean>;
  get(code: string): Promise<Link | undefined>;
  delete(code: string): Promise<boolean>;
}
