import type { MigrationSet } from "../../platform/cassandra/migrations.js";

/**
 * Click analytics schema (portable CQL: Cassandra 4/5 and ScyllaDB).
 *
 * Version 1 (counter tables + per-event LWT ledger) is no longer written or read: counters are
 * not idempotent, so a write timeout that had applied double counted on retry. Its tables are
 * left in place (no data migration: nothing before version 2 was deployed).
 *
 * Version 2 (see adapters/cassandra-click-stats.ts):
 * - `click_batch_claims`: batch id (content hash) -> the lowest stream seq that carried it
 *   (written with timestamp MAX_SAFE_INTEGER - seq so the lowest seq wins; 7-day TTL = the
 *   CLICKS stream's max age, after which no republish can arrive).
 * - `click_deltas`: per shard of the codes and stream seq, that message's clicks of the shard's
 *   codes summed per code, day, referrer and (since countries are counted) country (JSON
 *   text): rewriting it is harmless. No TTL: a
 *   delta is deleted only once folded into `click_rollup`. gc_grace_seconds is short on
 *   purpose: each fold leaves a range tombstone, and a deleted row that came back (no repair in
 *   time) has a seq at or below the shard's watermark, so it is never read: harmless here.
 * - `click_rollup`: absolute totals per shard and code (kind 't' = totals, 'd' = day, 'r' =
 *   referrer, 'c' = country), each row written USING TIMESTAMP <the seq it is folded up to>, and per shard the
 *   static `watermark` (highest seq fully folded) and `as_of` (clicks published before it are
 *   all in the totals).
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
          seq bigint,
          batch_id text,
          d text,
          PRIMARY KEY ((shard), seq)) WITH gc_grace_seconds = 3600`,
        `CREATE TABLE IF NOT EXISTS click_rollup (
          shard int,
          code text,
          kind text,
          key text,
          watermark bigint static,
          as_of timestamp static,
          human bigint,
          bot bigint,
          PRIMARY KEY ((shard), code, kind, key))`,
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
