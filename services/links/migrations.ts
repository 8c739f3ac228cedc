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
  ],
};
