import type { MigrationSet } from "../../platform/cassandra/migrations.js";

/**
 * Click analytics schema (portable CQL: Cassandra 4/5 and ScyllaDB).
 *
 * Version 1 (counter tables + per-event LWT ledger) is no longer written or read: counters are
 * not idempotent, so a write timeout that had applied double counted on retry. Its tables are
 * left in place (no data migration: nothing before version 2 was deployed).
 *
 * Version 2 (see adapters/cassandra-click-stats.ts):
 * - `click_batch_claims`: batch id (content hash) -> the stream seq that owns it (LWT claim per
 *   message, 7-day TTL = the CLICKS stream's max age, after which no republish can arrive).
 * - `click_deltas`: per code and stream seq, that batch's contribution as plain values (frozen
 *   maps per day and per referrer): rewriting it is harmless. Partitioned by a hash shard of the
 *   code (one mutation per shard per message). No TTL: a delta is deleted only after it has been
 *   folded into `click_rollup`. gc_grace_seconds is short on purpose: each fold leaves a range
 *   tombstone, and a deleted row that came back (no repair in time) has a seq at or below its
 *   code's watermark, so it is ignored: resurrection is harmless here.
 * - `click_rollup`: absolute totals per code (kind 't' = totals, 'd' = day, 'r' = referrer) and
 *   the static `watermark`: the highest seq folded in; deltas at or below it are ignored.
 * - `click_consumer_progress`: each durable's last lag report (freshness of the numbers).
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
    {
      version: 2,
      name: "click_batch_deltas_and_rollup",
      statements: [
        `CREATE TABLE IF NOT EXISTS click_batch_claims (
          batch_id text PRIMARY KEY,
          seq bigint) WITH default_time_to_live = 604800`,
        `CREATE TABLE IF NOT EXISTS click_deltas (
          shard int,
          code text,
          seq bigint,
          human int,
          bot int,
          human_days frozen<map<text, int>>,
          bot_days frozen<map<text, int>>,
          referrers frozen<map<text, int>>,
          PRIMARY KEY ((shard), code, seq)) WITH gc_grace_seconds = 3600`,
        `CREATE TABLE IF NOT EXISTS click_rollup (
          code text,
          kind text,
          key text,
          watermark bigint static,
          human bigint,
          bot bigint,
          PRIMARY KEY ((code), kind, key))`,
        `CREATE TABLE IF NOT EXISTS click_consumer_progress (
          scope text,
          durable text,
          ack_floor bigint,
          pending_messages bigint,
          pending_clicks bigint,
          oldest_pending timestamp,
          at timestamp,
          PRIMARY KEY ((scope), durable))`,
      ],
    },
  ],
};
