import type { MigrationSet } from "../../platform/cassandra/migrations.js";

/** Schema of the apikeys scope. Never edit an applied migration: append a new version. */
export const apiKeyMigrations: MigrationSet = {
  scope: "apikeys",
  migrations: [
    {
      version: 1,
      name: "create_api_keys",
      statements: [
        `CREATE TABLE IF NOT EXISTS api_keys (
          id text PRIMARY KEY,
          owner_id text,
          secret_sha256 text,
          name text,
          created_at timestamp,
          revoked_at timestamp)`,
        `CREATE TABLE IF NOT EXISTS api_keys_by_owner (
          owner_id text,
          id text,
          created_at timestamp,
          PRIMARY KEY ((owner_id), id))`,
      ],
    },
  ],
};
