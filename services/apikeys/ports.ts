/**
 * ApiKeyStore port: partner API keys. Only a SHA-256 of each key's secret is stored; the
 * plaintext key is shown once, when it is issued.
 *
 * - `insert(record)` stores a new key record; false (and nothing written) when the id exists.
 * - `get(id)` returns the record (revoked ones included, with `revokedAt`), or undefined.
 * - `revoke(id, at)` marks the key revoked; true when the key exists (revoking twice is true
 *   and keeps the first time), false when there is no such key.
 * - `listByOwner(owner)` every key of an owner (revoked included), oldest first.
 *
 * Errors: an unreachable backend -> DomainError "Unavailable".
 */
export interface ApiKeyRecord {
  /** Public key id: the `<id>` in `sb_<id>_<secret>`. */
  readonly id: string;
  /** The identity the key authenticates as (Identity.userId). */
  readonly ownerId: string;
  /** Lower-case hex SHA-256 of the secret part. */
  readonly secretSha256: string;
  readonly name: string;
  readonly createdAt: Date;
  readonly revokedAt?: Date;
}

export interface ApiKeyStore {
  insert(record: ApiKeyRecord): Promise<boolean>;
  get(id: string): Promise<ApiKeyRecord | undefined>;
  revoke(id: string, at: Date): Promise<boolean>;
  listByOwner(ownerId: string): Promise<readonly ApiKeyRecord[]>;
}
