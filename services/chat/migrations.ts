import type { MigrationSet } from "../../platform/cassandra/migrations.js";

/**
 * Schema of the chat scope (tables explained in adapters/cassandra-chat-store.ts). Never edit
 * an applied migration: append a new version.
 */
export const chatMigrations: MigrationSet = {
  scope: "chat",
  migrations: [
    {
      version: 1,
      name: "create_chat",
      statements: [
        `CREATE TABLE IF NOT EXISTS chat_channels (
          channel_id text PRIMARY KEY,
          type text,
          name text,
          created_at timestamp,
          created_by text,
          version int)`,
        `CREATE TABLE IF NOT EXISTS chat_members (
          channel_id text,
          user_id text,
          role text,
          joined_at timestamp,
          joined_id bigint,
          PRIMARY KEY ((channel_id), user_id))`,
        `CREATE TABLE IF NOT EXISTS chat_user_channels (
          user_id text,
          channel_id text,
          joined_id bigint,
          left_id bigint,
          PRIMARY KEY ((user_id), channel_id))`,
        // Written only with USING TIMESTAMP <id>: the largest id wins without a read.
        `CREATE TABLE IF NOT EXISTS chat_channel_last (
          channel_id text PRIMARY KEY,
          last_message_id bigint,
          last_event_id bigint)`,
        `CREATE TABLE IF NOT EXISTS chat_messages (
          channel_id text,
          bucket int,
          id bigint,
          sender_id text,
          client_message_id text,
          text text,
          created_at timestamp,
          deleted boolean,
          deleted_at timestamp,
          deleted_by text,
          announced_ids set<bigint>,
          PRIMARY KEY ((channel_id, bucket), id))`,
        `CREATE TABLE IF NOT EXISTS chat_changes (
          channel_id text,
          bucket int,
          id bigint,
          kind text,
          created_at timestamp,
          event blob,
          PRIMARY KEY ((channel_id, bucket), id))`,
        // The non-empty buckets of a channel, so reads jump over empty stretches of time.
        `CREATE TABLE IF NOT EXISTS chat_buckets (
          channel_id text,
          bucket int,
          has_messages boolean,
          has_changes boolean,
          PRIMARY KEY ((channel_id), bucket))`,
        `CREATE TABLE IF NOT EXISTS chat_direct_pairs (
          pair_key text PRIMARY KEY,
          channel_id text)`,
        `CREATE TABLE IF NOT EXISTS chat_group_requests (
          creator_id text,
          request_id text,
          channel_id text,
          request_hash text,
          PRIMARY KEY ((creator_id, request_id)))`,
        `CREATE TABLE IF NOT EXISTS chat_client_ids (
          channel_id text,
          sender_id text,
          client_message_id text,
          id bigint,
          text text,
          created_at timestamp,
          PRIMARY KEY ((channel_id, sender_id, client_message_id)))`,
        // Written only with USING TIMESTAMP <id>, like chat_channel_last.
        `CREATE TABLE IF NOT EXISTS chat_read_markers (
          user_id text,
          channel_id text,
          up_to bigint,
          PRIMARY KEY ((user_id), channel_id))`,
        `CREATE TABLE IF NOT EXISTS chat_delivered_markers (
          user_id text,
          device_id text,
          channel_id text,
          up_to bigint,
          PRIMARY KEY ((user_id, device_id), channel_id))`,
      ],
    },
  ],
};
