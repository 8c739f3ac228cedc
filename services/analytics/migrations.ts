import type { MigrationSet } from "../../platform/cassandra/migrations.js";

/**
 * Click analytics schema (portable CQL: Cassandra 4/5 and ScyllaDB). Counter tables hold only
 * counters besides their keys. `click_events_seen` is the dedupe ledger (LWT claim per event id,
 * 7-day TTL: longer than the CLICKS stream's redelivery horizon).
 */
export const analyticsMigrations: MigrationSet = {
  scope: "analytics",
  migrations: [
    {
      version: 1,
      name: "create_click_counters",
      statements: [
        `CREATE TABLE IF NOT EXISTS click_totals (
          code text PRIMARY KEY,
          human counter,
          bot counter)`,
        `CREATE TABLE IF NOT EXISTS click_days (
          code text,
          day text,
          human counter,
          bot counter,
          PRIMARY KEY ((code), day))`,
        `CREATE TABLE IF NOT EXISTS click_referrers (
          code text,
          referrer text,
          human counter,
          PRIMARY KEY ((code), referrer))`,
        `CREATE TABLE IF NOT EXISTS click_events_seen (
          event_id text PRIMARY KEY,
          code text) WITH default_time_to_live = 604800`,
      ],
    },
  ],
};
