import type { MigrationSet } from "../../platform/cassandra/migrations.js";

/**
 * Schema of the push scope (the table is explained in adapters/cassandra-device-store.ts).
 * Never edit an applied migration: append a new version.
 */
export const pushMigrations: MigrationSet = {
  scope: "push",
  migrations: [
    {
      version: 1,
      name: "create_push_devices",
      statements: [
        `CREATE TABLE IF NOT EXISTS push_devices (
          user_id text,
          device_id text,
          platform text,
          device_token text,
          display_name text,
          show_preview boolean,
          created_at timestamp,
          updated_at timestamp,
          write_id text,
          PRIMARY KEY ((user_id), device_id))`,
      ],
    },
  ],
};
