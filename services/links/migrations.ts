import type { MigrationSet } from "../../platform/cassandra/migrations.js";

/** Schema of the links scope. Never edit an applied migration: append a new version. */
export const linkMigrations: MigrationSet = {
  scope: "links",
  migrations: [
    {
      version: 1,
      name: "create_links",
      statements: [
        `CREATE TABLE IF NOT EXISTS links (
          code text PRIMARY KEY,
          long_url text,
          owner_id text,
          created_at timestamp,
          expires_at timestamp,
          redirect_type int)`,
      ],
    },
    {
      // One statement, so a runner that dies mid-migration cannot leave it half applied.
      version: 2,
      name: "links_version_update_custom",
      statements: [`ALTER TABLE links ADD (updated_at timestamp, version bigint, custom boolean)`],
    },
    {
      version: 3,
      name: "links_by_owner_and_idempotency",
      statements: [
        // The owner's listing index (newest first); the link itself stays in `links`.
        `CREATE TABLE IF NOT EXISTS links_by_owner (
          owner_id text,
          created_at timestamp,
          code text,
          PRIMARY KEY ((owner_id), created_at, code))
          WITH CLUSTERING ORDER BY (created_at DESC, code ASC)`,
        // Create idempotency keys: (owner, key) -> code for 24 h (rows are written with TTL).
        `CREATE TABLE IF NOT EXISTS link_idempotency (
          owner_id text,
          idem_key text,
          code text,
          request_hash text,
          PRIMARY KEY ((owner_id, idem_key)))
          WITH default_time_to_live = 86400`,
      ],
    },
    {
      version: 4,
      name: "link_aliases_case_insensitive",
      statements: [
        // Folded (lower-case) code -> the link holding it, so aliases differing only in case
        // cannot coexist. No TTL: a claim whose link is gone is taken over (see the store).
        `CREATE TABLE IF NOT EXISTS link_aliases (
          folded text PRIMARY KEY,
          code text,
          created_at timestamp)`,
      ],
    },
  ],
};
