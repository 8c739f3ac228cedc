import { fromBinary, toBinary } from "@bufbuild/protobuf";
import cassandra from "cassandra-driver";
import { ChatEventSchema } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { migrateOnFirstUse } from "../../../platform/cassandra/migrations.js";
import type { CqlOptions, CqlRow, CqlSession, CqlStatement } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { DomainError } from "../../../platform/errors.js";
import { decodeSnowflake } from "../../tokenrange/snowflake.js";
import { chatMigrations } from "../migrations.js";
import { announcedMessage, tombstoneAnnounce } from "./announce.js";
import { type BucketEntry, SettledBuckets } from "./settled-buckets.js";
import type {
  Channel,
  ChannelEvent,
  ChannelRecord,
  ChangeKind,
  ChangeRecord,
  ChatStore,
  ClaimResult,
  HistoryAnchor,
  HistoryPage,
  MemberRecord,
  MembershipChange,
  MessageRecord,
  Role,
  UserChannel,
} from "../ports.js";

const { Long } = cassandra.types;

/** Time bucket of messages and changes: partitions stay bounded however busy a channel is. */
export const BUCKET_MS = 10 * 24 * 3600 * 1000;
const DAY_S = 24 * 3600;
/** Group request claims live 24 h; client message id claims an hour longer (retries near the edge). */
const GROUP_REQUEST_TTL_S = DAY_S;
const CLIENT_ID_TTL_S = DAY_S + 3600;
/** Most bucket-index entries remembered as written (per process); beyond it the cache restarts. */
const BUCKET_CACHE_MAX = 200_000;
const MARKER_IN_CHUNK = 100;
/** How far apart the servers' clocks may be (ids are minted from them). */
const CLOCK_SKEW_MS = 3600_000;
/** Channels whose settled buckets are remembered (a few hundred bytes each). */
const SETTLED_CHANNELS_MAX = 20_000;
function membersInJoinOrder(rows: readonly CqlRow[]): MemberRecord[] {
  return rows
    .map(toMember)
    .filter((m): m is MemberRecord => m !== undefined)
    .sort((a, b) => (a.joinedId < b.joinedId ? -1 : a.joinedId > b.joinedId ? 1 : a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
}

/** Buckets a history page reads in one statement at most. */
const MAX_BUCKET_WAVE = 64;
/** Margin on the buckets a wave is estimated to need (density varies from bucket to bucket). */
const WAVE_MARGIN = 1.25;

/**
 * Rows from buckets in walk order until `want` are in hand. One bucket first (a busy channel's
 * page is in its newest bucket), then, in one statement each (`bucket IN ...`, the coordinator
 * merges them in id order), waves growing 4x (4, 16, 64) but never past the buckets the rows per
 * bucket seen so far say are still needed, plus a quarter: a sparse channel whose page spans fifty
 * one-message buckets costs four statements instead of fifty, and reads about the buckets it needs
 * (every bucket in an IN is read up to the limit, so buckets read past the page cost the database
 * as much as the ones that fill it; one estimate from a single bucket is too rough to jump on).
 */
async function inWaves<T>(buckets: readonly number[], want: number, read: (buckets: readonly number[], n: number) => Promise<readonly T[]>): Promise<T[]> {
  const got: T[] = [];
  let wave = 1;
  for (let i = 0; i < buckets.length && got.length < want; ) {
    const slice = buckets.slice(i, i + wave);
    i += slice.length;
    got.push(...(await read(slice, want - got.length)));
    const perBucket = got.length / i;
    const needed = perBucket > 0 ? Math.ceil(((want - got.length) / perBucket) * WAVE_MARGIN) : Infinity;
    wave = Math.max(1, Math.min(needed, wave * 4, MAX_BUCKET_WAVE));
  }
  return got;
}

const MESSAGE_COLUMNS = "id, sender_id, client_message_id, text, created_at, deleted, deleted_at, deleted_by";
const CHANGE_COLUMNS = "id, kind, created_at, event";

export interface CassandraChatStoreOptions {
  /** Message (and change) TTL in days, config.chat.retentionDays; 0 = kept forever. */
  readonly retentionDays?: number;
  /** Client timeout of each write (config.chat.writeTimeoutMs), so a send fails fast within the settle window. */
  readonly writeTimeoutMs?: number;
  readonly log?: EngineLog;
  /**
   * Wall clock (Unix ms) that tells which buckets have settled (settled-buckets.ts); default
   * Date.now. Tests that write ids of arbitrary times set it past all of them.
   */
  readonly now?: () => number;
}

/**
 * ChatStore on Cassandra/ScyllaDB (portable CQL: no materialized views, no secondary indexes,
 * no ALLOW FILTERING). Tables (services/chat/migrations.ts):
 *
 * - `chat_channels` (channel_id) type, name, created_at, created_by, version. Created with
 *   `IF NOT EXISTS`; every membership change is `UPDATE ... SET version = v+1 IF version = v`
 *   first, then its member rows are written (plain writes: the LWT already serialized them).
 * - `chat_members` ((channel_id), user_id) role, joined_at, joined_id: getMember is one row,
 *   getChannel one partition (members sorted by joined_id here; at most the member cap).
 * - `chat_user_channels` ((user_id), channel_id) joined_id, left_id: the user's channel list.
 *   Member and user-channel rows are only written `USING TIMESTAMP <channel version>`, so the
 *   newest membership wins whatever the clocks, and a repeated creation (healing one that died
 *   after its LWT) never undoes a later change.
 * - `chat_channel_last` (channel_id) last_message_id, last_event_id and the markers
 *   `chat_read_markers` ((user_id), channel_id) / `chat_delivered_markers` ((user_id,
 *   device_id), channel_id) up_to: only ever written `USING TIMESTAMP <id>`, so the larger id
 *   wins by last-write-wins without a read or an LWT; advances read the effective value back.
 * - `chat_messages` and `chat_changes` ((channel_id, bucket), id), bucket = floor(id time /
 *   10 days). Changes store the ChatEvent as a protobuf blob. Message and change rows are
 *   written `USING TIMESTAMP` = the id's time; a delete overwrites text with '' (deleted =
 *   true) at a later timestamp, so a retried put of a deleted message cannot bring its text back.
 * - `chat_buckets` ((channel_id), bucket) has_messages, has_changes: the non-empty buckets.
 *   An entry is written (idempotent upsert, in the same batch as the row) the first time this
 *   process writes to that bucket. Reads take the settled part of the index once per channel
 *   (settled-buckets.ts: buckets no write can reach any more) and read the two or three open
 *   buckets directly, so a page of a busy channel costs one statement.
 * - `chat_direct_pairs` (pair_key) channel_id; `chat_group_requests` ((creator_id,
 *   request_id)), TTL 24 h; `chat_client_ids` ((channel_id, sender_id, client_message_id)) id,
 *   text, created_at, TTL 25 h: `IF NOT EXISTS` claims (a lost claim reads the winner at
 *   LOCAL_SERIAL). Deleting a message also removes the text from its claim row and from
 *   the "message" changes re-announcing it (found through chat_messages.announced_ids).
 *
 * Statements per call (one round trip each; "batch" = one unlogged batch request):
 * - putMessage: 1 batch (message row, last ids, bucket entry when new to this process).
 * - appendChange: 1 batch (change row, last event id, bucket entry when new; a "message"
 *   re-announce also adds its id to the message's announced_ids).
 * - claimClientMessageId: 1 LWT (+ 1 serial read and 1 message read when lost).
 * - findClaim: 1 read (+ 1 message read when found); recordClaim: 1 write.
 * - getMember, getMessage, userChannels: 1 read. getChannel: 3 reads in parallel.
 * - createChannel: 1 LWT, then the member batch and the change batch in parallel (a lost LWT:
 *   1 serial read, and the same writes when it was our own creation).
 * - changeMembership: 1 LWT, then the member batch and the change batch in parallel.
 * - claimDirect, claimGroupRequest: 1 LWT (+ 1 serial read when lost).
 * - history: 1 read of the newest candidate bucket, then 1 read per wave (`bucket IN`, unpaged)
 *   of 4, 16, 64 buckets, each cut to what the density so far says is needed, until the page is
 *   full; + 1 index read per channel and process when a bucket has settled since the last one.
 * - eventsAfter, countUnread: 1 read per candidate bucket touched (eventsAfter: messages and
 *   changes of a bucket in parallel), + the same index read.
 * - deleteMessage: 1 read, then the tombstone write and the claim scrub in parallel (+ 1 read
 *   and 1 write per re-announce of the message).
 * - advance markers: 1 write + 1 read. readMarkers: 1 read per 100 channels, in parallel.
 *
 * Write timestamps that are not wall time: ids read as µs ("newest wins", far in the future)
 * and channel versions (membership rows, near 1970). Fine by default, but Cassandra's
 * maximum/minimum timestamp guardrails (off by default), if an operator enables them, would
 * refuse these writes.
 *
 * Messages and changes get `USING TTL` when retentionDays > 0. Writes are idempotent, carry the
 * write timeout, and run at LOCAL_QUORUM (the session's default); driver failures surface as
 * DomainError "Unavailable" (platform/cassandra/session.ts). Schema migrated on first use.
 */
export class CassandraChatStore implements ChatStore {
  private readonly ttlS: number;
  private readonly bucketTtlS: number;
  private readonly write: CqlOptions;
  private readonly knownBuckets = new Set<string>();
  private readonly settled: SettledBuckets;

  constructor(
    private readonly cql: CqlSession,
    options: CassandraChatStoreOptions = {},
  ) {
    this.ensureSchema = migrateOnFirstUse(cql, chatMigrations, options.log);
    const days = options.retentionDays ?? 0;
    this.ttlS = days > 0 ? days * DAY_S : 0;
    // An index entry outlives the last message its bucket can hold.
    this.bucketTtlS = days > 0 ? this.ttlS + (BUCKET_MS / 1000) + DAY_S : 0;
    this.write = { idempotent: true, ...(options.writeTimeoutMs !== undefined ? { timeoutMs: options.writeTimeoutMs } : {}) };
    this.settled = new SettledBuckets({
      bucketMs: BUCKET_MS,
      settleMs: CLIENT_ID_TTL_S * 1000 + CLOCK_SKEW_MS,
      skewMs: CLOCK_SKEW_MS,
      maxChannels: SETTLED_CHANNELS_MAX,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  /** Applies this store's migrations once (idempotent); operations call it themselves. */
  readonly ensureSchema: () => Promise<void>;

  async createChannel(channel: ChannelRecord, members: readonly MemberRecord[], event: ChangeRecord): Promise<boolean> {
    await this.ensureSchema();
    const applied = await this.cql.executeLwt(
      "INSERT INTO chat_channels (channel_id, type, name, created_at, created_by, version) VALUES (?, ?, ?, ?, ?, 1) IF NOT EXISTS",
      [channel.id, channel.type, channel.name, channel.createdAt, channel.createdBy],
      this.write,
    );
    if (!applied) {
      // Our own earlier attempt (same creation) may have died after the LWT: finish it.
      if (await this.isSameCreation(channel)) await this.writeCreation(channel, members, event);
      return false;
    }
    await this.writeCreation(channel, members, event);
    return true;
  }

  private async isSameCreation(channel: ChannelRecord): Promise<boolean> {
    const rows = await this.cql.execute("SELECT type, name, created_at, created_by FROM chat_channels WHERE channel_id = ?", [channel.id], serialRead);
    const r = rows[0];
    return (
      !!r &&
      r["type"] === channel.type &&
      r["name"] === channel.name &&
      r["created_by"] === channel.createdBy &&
      r["created_at"] instanceof Date &&
      r["created_at"].getTime() === channel.createdAt.getTime()
    );
  }

  /** Member rows of version 1 (see membershipTimestamp): a healed creation never undoes a later change. */
  private async writeCreation(channel: ChannelRecord, members: readonly MemberRecord[], event: ChangeRecord): Promise<void> {
    const ts = membershipTimestamp(1);
    const rows: CqlStatement[] = [];
    for (const m of members) {
      rows.push(
        {
          cql: "INSERT INTO chat_members (channel_id, user_id, role, joined_at, joined_id) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
          params: [channel.id, m.userId, m.role, m.joinedAt, long(m.joinedId), ts],
        },
        {
          cql: "INSERT INTO chat_user_channels (user_id, channel_id, joined_id) VALUES (?, ?, ?) USING TIMESTAMP ?",
          params: [m.userId, channel.id, long(event.id), ts],
        },
      );
    }
    await Promise.all([rows.length > 0 ? this.cql.executeBatch(rows, this.write) : undefined, this.storeChange(event)]);
  }

  async claimDirect(pairKey: string, channelId: string): Promise<string> {
    await this.ensureSchema();
    const won = await this.cql.executeLwt("INSERT INTO chat_direct_pairs (pair_key, channel_id) VALUES (?, ?) IF NOT EXISTS", [pairKey, channelId], this.write);
    if (won) return channelId;
    const rows = await this.cql.execute("SELECT channel_id FROM chat_direct_pairs WHERE pair_key = ?", [pairKey], serialRead);
    const cur = rows[0]?.["channel_id"];
    if (typeof cur !== "string") throw new DomainError("Unavailable", `direct pair ${pairKey} is contended; retry`, { retryAfterMs: 100 });
    return cur;
  }

  async claimGroupRequest(
    creatorId: string,
    requestId: string,
    record: { readonly channelId: string; readonly requestHash: string },
  ): Promise<{ readonly channelId: string; readonly requestHash: string }> {
    await this.ensureSchema();
    for (let attempt = 0; attempt < 3; attempt++) {
      const won = await this.cql.executeLwt(
        "INSERT INTO chat_group_requests (creator_id, request_id, channel_id, request_hash) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
        [creatorId, requestId, record.channelId, record.requestHash, GROUP_REQUEST_TTL_S],
        this.write,
      );
      if (won) return { channelId: record.channelId, requestHash: record.requestHash };
      const rows = await this.cql.execute(
        "SELECT channel_id, request_hash FROM chat_group_requests WHERE creator_id = ? AND request_id = ?",
        [creatorId, requestId],
        serialRead,
      );
      const r = rows[0];
      if (r && typeof r["channel_id"] === "string") return { channelId: r["channel_id"], requestHash: String(r["request_hash"] ?? "") };
      // Expired between the two statements: claim again.
    }
    throw new DomainError("Unavailable", `group request ${requestId} is contended; retry`, { retryAfterMs: 100 });
  }

  async getChannel(id: string): Promise<Channel | undefined> {
    await this.ensureSchema();
    const [chRows, memberRows, lastRows] = await Promise.all([
      this.cql.execute("SELECT channel_id, type, name, created_at, created_by, version FROM chat_channels WHERE channel_id = ?", [id], read),
      this.cql.execute("SELECT user_id, role, joined_at, joined_id FROM chat_members WHERE channel_id = ?", [id], read),
      this.cql.execute("SELECT last_message_id, last_event_id FROM chat_channel_last WHERE channel_id = ?", [id], read),
    ]);
    const r = chRows[0];
    if (!r || (r["type"] !== "direct" && r["type"] !== "group")) return undefined;
    const members = membersInJoinOrder(memberRows);
    const last = lastRows[0];
    return {
      id,
      type: r["type"],
      name: String(r["name"] ?? ""),
      createdAt: r["created_at"] as Date,
      createdBy: String(r["created_by"] ?? ""),
      version: Number(r["version"] ?? 1),
      members,
      lastMessageId: big(last?.["last_message_id"]) ?? 0n,
      lastEventId: big(last?.["last_event_id"]) ?? 0n,
    };
  }

  async getMembers(channelId: string): Promise<readonly MemberRecord[]> {
    await this.ensureSchema();
    return membersInJoinOrder(await this.cql.execute("SELECT user_id, role, joined_at, joined_id FROM chat_members WHERE channel_id = ?", [channelId], read));
  }

  async getMember(channelId: string, userId: string): Promise<MemberRecord | undefined> {
    await this.ensureSchema();
    const rows = await this.cql.execute(
      "SELECT user_id, role, joined_at, joined_id FROM chat_members WHERE channel_id = ? AND user_id = ?",
      [channelId, userId],
      read,
    );
    return rows[0] ? toMember(rows[0]) : undefined;
  }

  async changeMembership(change: MembershipChange): Promise<"ok" | "conflict"> {
    await this.ensureSchema();
    const { channelId, expectedVersion } = change;
    const applied = await this.cql.executeLwt(
      "UPDATE chat_channels SET version = ? WHERE channel_id = ? IF version = ?",
      [expectedVersion + 1, channelId, expectedVersion],
      this.write,
    );
    if (!applied) return "conflict";
    const eventId = long(change.event.id);
    const ts = membershipTimestamp(expectedVersion + 1);
    const removed = new Set(change.remove ?? []);
    const rows: CqlStatement[] = [];
    for (const userId of removed) {
      rows.push(
        { cql: "DELETE FROM chat_members USING TIMESTAMP ? WHERE channel_id = ? AND user_id = ?", params: [ts, channelId, userId] },
        { cql: "UPDATE chat_user_channels USING TIMESTAMP ? SET left_id = ? WHERE user_id = ? AND channel_id = ?", params: [ts, eventId, userId, channelId] },
      );
    }
    for (const m of change.add ?? []) {
      rows.push(
        {
          cql: "INSERT INTO chat_members (channel_id, user_id, role, joined_at, joined_id) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
          params: [channelId, m.userId, m.role, m.joinedAt, long(m.joinedId), ts],
        },
        {
          cql: "INSERT INTO chat_user_channels (user_id, channel_id, joined_id) VALUES (?, ?, ?) USING TIMESTAMP ?",
          params: [m.userId, channelId, eventId, ts],
        },
        { cql: "DELETE left_id FROM chat_user_channels USING TIMESTAMP ? WHERE user_id = ? AND channel_id = ?", params: [ts, m.userId, channelId] },
      );
    }
    const present = new Set([...(change.add ?? []).map((m) => m.userId)]);
    for (const r of change.roles ?? []) {
      if (removed.has(r.userId)) continue;
      // An UPDATE would create a half row for a non-member: only members and new members get a role.
      if (!present.has(r.userId) && !(await this.getMember(channelId, r.userId))) continue;
      rows.push({ cql: "UPDATE chat_members USING TIMESTAMP ? SET role = ? WHERE channel_id = ? AND user_id = ?", params: [ts, r.role, channelId, r.userId] });
    }
    await Promise.all([rows.length > 0 ? this.cql.executeBatch(rows, this.write) : undefined, this.storeChange(change.event)]);
    return "ok";
  }

  async userChannels(userId: string): Promise<readonly UserChannel[]> {
    await this.ensureSchema();
    const rows = await this.cql.execute("SELECT channel_id, joined_id, left_id FROM chat_user_channels WHERE user_id = ?", [userId], read);
    const out: UserChannel[] = [];
    for (const r of rows) {
      const joinedId = big(r["joined_id"]);
      if (joinedId === undefined) continue;
      const leftId = big(r["left_id"]);
      out.push({ channelId: String(r["channel_id"]), joinedId, ...(leftId !== undefined ? { leftId } : {}) });
    }
    return out;
  }

  async claimClientMessageId(message: MessageRecord): Promise<ClaimResult> {
    await this.ensureSchema();
    const key = [message.channelId, message.senderId, message.clientMessageId];
    for (let attempt = 0; attempt < 3; attempt++) {
      const won = await this.cql.executeLwt(
        "INSERT INTO chat_client_ids (channel_id, sender_id, client_message_id, id, text, created_at) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
        [...key, long(message.id), message.text, message.createdAt, CLIENT_ID_TTL_S],
        this.write,
      );
      if (won) return { claimed: true };
      const rows = await this.cql.execute(
        "SELECT id, text, created_at FROM chat_client_ids WHERE channel_id = ? AND sender_id = ? AND client_message_id = ?",
        key,
        serialRead,
      );
      const r = rows[0];
      const id = big(r?.["id"]);
      if (!r || id === undefined) continue; // expired meanwhile
      // The message row is authoritative once it landed (it may have been deleted since).
      const stored = await this.getMessage(message.channelId, id);
      return {
        claimed: false,
        existing: stored ?? {
          id,
          channelId: message.channelId,
          senderId: message.senderId,
          clientMessageId: message.clientMessageId,
          text: String(r["text"] ?? ""),
          createdAt: r["created_at"] as Date,
          deleted: false,
        },
      };
    }
    throw new DomainError("Unavailable", `client_message_id ${message.clientMessageId} is contended; retry`, { retryAfterMs: 100 });
  }

  async findClaim(channelId: string, senderId: string, clientMessageId: string): Promise<MessageRecord | undefined> {
    await this.ensureSchema();
    const rows = await this.cql.execute(
      "SELECT id, text, created_at FROM chat_client_ids WHERE channel_id = ? AND sender_id = ? AND client_message_id = ?",
      [channelId, senderId, clientMessageId],
      read,
    );
    const r = rows[0];
    const id = big(r?.["id"]);
    if (!r || id === undefined) return undefined;
    const stored = await this.getMessage(channelId, id);
    return stored ?? { id, channelId, senderId, clientMessageId, text: String(r["text"] ?? ""), createdAt: r["created_at"] as Date, deleted: false };
  }

  async recordClaim(message: MessageRecord, atMicros: bigint): Promise<void> {
    await this.ensureSchema();
    await this.cql.execute(
      "INSERT INTO chat_client_ids (channel_id, sender_id, client_message_id, id, text, created_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
      [message.channelId, message.senderId, message.clientMessageId, long(message.id), message.text, message.createdAt, CLIENT_ID_TTL_S, long(atMicros)],
      this.write,
    );
  }

  async putMessage(message: MessageRecord): Promise<void> {
    await this.ensureSchema();
    const bucket = bucketOf(message.id);
    const at = long(idMicrosOf(message.id));
    const id = long(message.id);
    const cols = ["channel_id", "bucket", "id", "sender_id", "client_message_id", "text", "created_at", "deleted"];
    const params: unknown[] = [message.channelId, bucket, id, message.senderId, message.clientMessageId, message.text, message.createdAt, message.deleted];
    if (message.deletedAt) cols.push("deleted_at"), params.push(message.deletedAt);
    if (message.deletedBy !== undefined) cols.push("deleted_by"), params.push(message.deletedBy);
    const statements: CqlStatement[] = [
      {
        cql: `INSERT INTO chat_messages (${cols.join(", ")}) VALUES (${cols.map(() => "?").join(", ")}) USING TTL ? AND TIMESTAMP ?`,
        params: [...params, this.ttlS, at],
      },
      {
        cql: "UPDATE chat_channel_last USING TIMESTAMP ? SET last_message_id = ?, last_event_id = ? WHERE channel_id = ?",
        params: [id, id, id, message.channelId],
      },
    ];
    const entry = this.bucketEntry(message.channelId, bucket, "has_messages");
    if (entry) statements.push(entry.statement);
    await this.cql.executeBatch(statements, this.write);
    entry?.remember();
    this.settled.noteWrite(message.channelId, bucket, "messages");
  }

  async getMessage(channelId: string, id: bigint): Promise<MessageRecord | undefined> {
    await this.ensureSchema();
    const rows = await this.cql.execute(
      `SELECT ${MESSAGE_COLUMNS} FROM chat_messages WHERE channel_id = ? AND bucket = ? AND id = ?`,
      [channelId, bucketOf(id), long(id)],
      read,
    );
    return rows[0] ? toMessage(channelId, rows[0]) : undefined;
  }

  async history(channelId: string, anchor: HistoryAnchor, limit: number): Promise<HistoryPage> {
    await this.ensureSchema();
    const want = limit + 1;
    const buckets = (await this.buckets(channelId)).filter((b) => b.messages).map((b) => b.bucket);
    if ("afterId" in anchor) {
      const from = bucketOf(anchor.afterId);
      const after = long(anchor.afterId);
      const got = await inWaves(
        buckets.filter((b) => b >= from),
        want,
        (wave, n) => this.messagesIn(channelId, wave, "id > ?", [after], "ASC", n),
      );
      return { messages: got.slice(0, limit), hasMore: got.length > limit };
    }
    const before = "beforeId" in anchor ? anchor.beforeId : undefined;
    const to = before === undefined ? Infinity : bucketOf(before);
    const got = await inWaves(buckets.filter((b) => b <= to).reverse(), want, (wave, n) =>
      before === undefined ? this.messagesIn(channelId, wave, "", [], "DESC", n) : this.messagesIn(channelId, wave, "id < ?", [long(before)], "DESC", n),
    );
    return { messages: got.slice(0, limit).reverse(), hasMore: got.length > limit };
  }

  /** Up to `n` messages of the given buckets matching `range`, in `order` of id, in one statement. */
  private async messagesIn(
    channelId: string,
    buckets: readonly number[],
    range: string,
    bounds: readonly unknown[],
    order: "ASC" | "DESC",
    n: number,
  ): Promise<MessageRecord[]> {
    const where = range ? ` AND ${range}` : "";
    const rows =
      buckets.length === 1
        ? await this.cql.execute(
            `SELECT ${MESSAGE_COLUMNS} FROM chat_messages WHERE channel_id = ? AND bucket = ?${where} ORDER BY id ${order} LIMIT ?`,
            [channelId, buckets[0], ...bounds, n],
            read,
          )
        : await this.cql.execute(
            `SELECT ${MESSAGE_COLUMNS} FROM chat_messages WHERE channel_id = ? AND bucket IN ?${where} ORDER BY id ${order} LIMIT ?`,
            [channelId, buckets, ...bounds, n],
            readUnpaged,
          );
    return messagesOf(channelId, rows);
  }

  async deleteMessage(channelId: string, id: bigint, by: string, at: Date): Promise<boolean> {
    await this.ensureSchema();
    const rows = await this.cql.execute(
      `SELECT ${MESSAGE_COLUMNS}, announced_ids FROM chat_messages WHERE channel_id = ? AND bucket = ? AND id = ?`,
      [channelId, bucketOf(id), long(id)],
      read,
    );
    const cur = rows[0] ? toMessage(channelId, rows[0]) : undefined;
    if (!cur) return false;
    if (cur.deleted) return true;
    const announced = Array.isArray(rows[0]!["announced_ids"]) ? (rows[0]!["announced_ids"] as unknown[]).map((v) => BigInt(String(v))) : [];
    // Above the put's timestamp (the id's time) even when this clock is behind the minter's.
    const idMicros = idMicrosOf(id);
    const ts = long(laterThan(idMicros));
    await Promise.all([
      this.cql.execute(
        "UPDATE chat_messages USING TTL ? AND TIMESTAMP ? SET text = '', deleted = true, deleted_at = ?, deleted_by = ? WHERE channel_id = ? AND bucket = ? AND id = ?",
        [this.ttlS, ts, at, by, channelId, bucketOf(id), long(id)],
        this.write,
      ),
      this.scrubClaim(cur, idMicros),
      ...announced.map((changeId) => this.scrubAnnounce(channelId, changeId, at)),
    ]);
    return true;
  }

  /**
   * The claim row holds the text for retries: it goes too. While the message is younger than the
   * claim's TTL the claim is this message's (a key is claimed once per TTL), so a plain delete
   * is enough; it is stamped a minute after the id's time so it beats the claim's LWT write
   * (ballot time ~ id time) even with this clock behind. Older claims have expired.
   */
  private async scrubClaim(m: MessageRecord, idMicros: bigint): Promise<void> {
    const nowMicros = BigInt(Date.now()) * 1000n;
    if (nowMicros - idMicros >= BigInt(CLIENT_ID_TTL_S) * 1_000_000n) return;
    await this.cql.execute(
      "DELETE text FROM chat_client_ids USING TIMESTAMP ? WHERE channel_id = ? AND sender_id = ? AND client_message_id = ?",
      [long(bigMax(nowMicros, idMicros + 60_000_000n)), m.channelId, m.senderId, m.clientMessageId],
      this.write,
    );
  }

  /** Rewrites a re-announce change of a deleted message without its text. */
  private async scrubAnnounce(channelId: string, changeId: bigint, at: Date): Promise<void> {
    const rows = await this.cql.execute(
      `SELECT ${CHANGE_COLUMNS} FROM chat_changes WHERE channel_id = ? AND bucket = ? AND id = ?`,
      [channelId, bucketOf(changeId), long(changeId)],
      read,
    );
    const c = rows[0] ? toChange(channelId, rows[0]) : undefined;
    if (!c) return;
    await this.cql.execute(
      "UPDATE chat_changes USING TTL ? AND TIMESTAMP ? SET event = ? WHERE channel_id = ? AND bucket = ? AND id = ?",
      [this.ttlS, long(laterThan(idMicrosOf(changeId))), Buffer.from(toBinary(ChatEventSchema, tombstoneAnnounce(c.event, at))), channelId, bucketOf(changeId), long(changeId)],
      this.write,
    );
  }

  async appendChange(change: ChangeRecord): Promise<void> {
    await this.ensureSchema();
    await this.storeChange(change);
  }

  async eventsAfter(channelId: string, afterId: bigint, limit: number, untilId?: bigint): Promise<readonly ChannelEvent[]> {
    await this.ensureSchema();
    const from = bucketOf(afterId);
    const to = untilId === undefined ? Infinity : bucketOf(untilId);
    const out: ChannelEvent[] = [];
    const range = untilId === undefined ? "id > ?" : "id > ? AND id <= ?";
    const bounds = untilId === undefined ? [long(afterId)] : [long(afterId), long(untilId)];
    for (const b of await this.buckets(channelId)) {
      if (b.bucket < from || b.bucket > to) continue;
      const n = limit - out.length;
      const [msgRows, changeRows] = await Promise.all([
        b.messages
          ? this.cql.execute(`SELECT ${MESSAGE_COLUMNS} FROM chat_messages WHERE channel_id = ? AND bucket = ? AND ${range} LIMIT ?`, [channelId, b.bucket, ...bounds, n], read)
          : [],
        b.changes
          ? this.cql.execute(`SELECT ${CHANGE_COLUMNS} FROM chat_changes WHERE channel_id = ? AND bucket = ? AND ${range} LIMIT ?`, [channelId, b.bucket, ...bounds, n], read)
          : [],
      ]);
      const events: ChannelEvent[] = [
        ...messagesOf(channelId, msgRows).map((message): ChannelEvent => ({ kind: "message", id: message.id, message })),
        ...changeRows.map((r) => toChange(channelId, r)).filter((c): c is ChangeRecord => c !== undefined).map((change): ChannelEvent => ({ kind: "change", id: change.id, change })),
      ].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
      out.push(...events.slice(0, n));
      if (out.length >= limit) break;
    }
    return out;
  }

  async countUnread(channelId: string, userId: string, afterId: bigint, cap: number): Promise<number> {
    await this.ensureSchema();
    if (cap <= 0) return 0;
    const from = bucketOf(afterId);
    let n = 0;
    for (const b of await this.buckets(channelId)) {
      if (!b.messages || b.bucket < from) continue;
      let pageState: string | undefined;
      do {
        const page = await this.cql.executePage(
          "SELECT sender_id, deleted FROM chat_messages WHERE channel_id = ? AND bucket = ? AND id > ?",
          [channelId, b.bucket, long(afterId)],
          { fetchSize: Math.min(1000, Math.max(100, cap * 2)), ...(pageState ? { pageState } : {}) },
          read,
        );
        for (const r of page.rows) {
          if (r["sender_id"] == null || r["deleted"] === true || r["sender_id"] === userId) continue;
          if (++n >= cap) return cap;
        }
        pageState = page.pageState;
      } while (pageState);
    }
    return n;
  }

  async advanceReadMarker(userId: string, channelId: string, upToId: bigint): Promise<bigint> {
    await this.ensureSchema();
    return this.advance("chat_read_markers", "user_id = ?", [userId], channelId, upToId);
  }

  async readMarkers(userId: string, channelIds: readonly string[]): Promise<ReadonlyMap<string, bigint>> {
    await this.ensureSchema();
    const unique = [...new Set(channelIds)];
    const chunks: string[][] = [];
    for (let i = 0; i < unique.length; i += MARKER_IN_CHUNK) chunks.push(unique.slice(i, i + MARKER_IN_CHUNK));
    const results = await Promise.all(
      chunks.map((chunk) =>
        this.cql.execute("SELECT channel_id, up_to FROM chat_read_markers WHERE user_id = ? AND channel_id IN ?", [userId, chunk], read),
      ),
    );
    const out = new Map<string, bigint>(unique.map((c) => [c, 0n]));
    for (const rows of results) for (const r of rows) out.set(String(r["channel_id"]), big(r["up_to"]) ?? 0n);
    return out;
  }

  async advanceDeliveredMarker(userId: string, deviceId: string, channelId: string, upToId: bigint): Promise<bigint> {
    await this.ensureSchema();
    return this.advance("chat_delivered_markers", "user_id = ? AND device_id = ?", [userId, deviceId], channelId, upToId);
  }

  /** Last-write-wins on the id as timestamp: a smaller id is written and loses; the effective value is read back. */
  private async advance(table: string, keyWhere: string, key: readonly string[], channelId: string, upToId: bigint): Promise<bigint> {
    if (upToId > 0n) {
      await this.cql.execute(
        `UPDATE ${table} USING TIMESTAMP ? SET up_to = ? WHERE ${keyWhere} AND channel_id = ?`,
        [long(upToId), long(upToId), ...key, channelId],
        this.write,
      );
    }
    const rows = await this.cql.execute(`SELECT up_to FROM ${table} WHERE ${keyWhere} AND channel_id = ?`, [...key, channelId], read);
    const cur = big(rows[0]?.["up_to"]) ?? 0n;
    return bigMax(cur, upToId);
  }

  private async storeChange(change: ChangeRecord): Promise<void> {
    const bucket = bucketOf(change.id);
    const id = long(change.id);
    const statements: CqlStatement[] = [
      {
        cql: "INSERT INTO chat_changes (channel_id, bucket, id, kind, created_at, event) VALUES (?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
        params: [change.channelId, bucket, id, change.kind, change.createdAt, Buffer.from(toBinary(ChatEventSchema, change.event)), this.ttlS, long(idMicrosOf(change.id))],
      },
      { cql: "UPDATE chat_channel_last USING TIMESTAMP ? SET last_event_id = ? WHERE channel_id = ?", params: [id, id, change.channelId] },
    ];
    const announced = change.kind === "message" ? announcedMessage(change.event) : undefined;
    if (announced) {
      // Lets deleteMessage find this copy of the text (a set: more than one re-announce is harmless).
      statements.push({
        cql: "UPDATE chat_messages USING TTL ? SET announced_ids = announced_ids + ? WHERE channel_id = ? AND bucket = ? AND id = ?",
        params: [this.ttlS, [id], change.channelId, bucketOf(announced.messageId), long(announced.messageId)],
      });
    }
    const entry = this.bucketEntry(change.channelId, bucket, "has_changes");
    if (entry) statements.push(entry.statement);
    await this.cql.executeBatch(statements, this.write);
    entry?.remember();
    this.settled.noteWrite(change.channelId, bucket, "changes");
  }

  /** The bucket-index upsert for a write, unless this process already wrote it. */
  private bucketEntry(
    channelId: string,
    bucket: number,
    column: "has_messages" | "has_changes",
  ): { statement: CqlStatement; remember: () => void } | undefined {
    const key = `${column}\u0000${channelId}\u0000${bucket}`;
    if (this.knownBuckets.has(key)) return undefined;
    return {
      statement: { cql: `INSERT INTO chat_buckets (channel_id, bucket, ${column}) VALUES (?, ?, true) USING TTL ?`, params: [channelId, bucket, this.bucketTtlS] },
      remember: () => {
        if (this.knownBuckets.size >= BUCKET_CACHE_MAX) this.knownBuckets.clear();
        this.knownBuckets.add(key);
      },
    };
  }

  /** The buckets a read of the channel must look at, ascending (settled-buckets.ts). */
  private buckets(channelId: string): Promise<BucketEntry[]> {
    return this.settled.buckets(channelId, async () => {
      const rows = await this.cql.execute("SELECT bucket, has_messages, has_changes FROM chat_buckets WHERE channel_id = ?", [channelId], read);
      return rows.map((r) => ({ bucket: Number(r["bucket"]), messages: r["has_messages"] === true, changes: r["has_changes"] === true }));
    });
  }
}

const read: CqlOptions = { idempotent: true };
const readUnpaged: CqlOptions = { idempotent: true, unpaged: true };
const serialRead: CqlOptions = { idempotent: true, consistency: "localSerial" };

export function bucketOf(id: bigint): number {
  return Math.floor(decodeSnowflake(id).timeMs / BUCKET_MS);
}

/**
 * Write timestamp of member and user-channel rows: the channel version they belong to. Versions
 * are serialized by the LWT, so the newest membership wins regardless of clocks, and repeating
 * an older write (a retry, a healed creation) never undoes a newer one.
 */
function membershipTimestamp(version: number): cassandra.types.Long {
  return Long.fromNumber(version);
}

function long(v: bigint): cassandra.types.Long {
  return Long.fromString(v.toString());
}

function big(v: unknown): bigint | undefined {
  return v == null ? undefined : BigInt(String(v));
}

/** The id's time in µs: the write timestamp of message and change rows (a retried write ties, never wins). */
function idMicrosOf(id: bigint): bigint {
  return BigInt(decodeSnowflake(id).timeMs) * 1000n;
}

/** A timestamp for overwriting a row stamped `micros`: now, or just above it when this clock is behind. */
function laterThan(micros: bigint): bigint {
  return bigMax(BigInt(Date.now()) * 1000n, micros + 1n);
}

function bigMax(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

const ROLES: readonly Role[] = ["owner", "admin", "member"];
const CHANGE_KINDS: readonly ChangeKind[] = ["deleted", "receipt", "member", "message"];

function toMember(r: CqlRow): MemberRecord | undefined {
  const joinedId = big(r["joined_id"]);
  const role = r["role"] as Role;
  // A row left half-written (role only) is not a membership.
  if (joinedId === undefined || !ROLES.includes(role)) return undefined;
  return { userId: String(r["user_id"]), role, joinedAt: r["joined_at"] as Date, joinedId };
}

function toMessage(channelId: string, r: CqlRow): MessageRecord | undefined {
  // Cells of an expired message can outlive it when written later (a delete): absent then.
  if (r["sender_id"] == null) return undefined;
  const deleted = r["deleted"] === true;
  const deletedAt = r["deleted_at"];
  const deletedBy = r["deleted_by"];
  return {
    id: BigInt(String(r["id"])),
    channelId,
    senderId: String(r["sender_id"]),
    clientMessageId: String(r["client_message_id"] ?? ""),
    text: deleted ? "" : String(r["text"] ?? ""),
    createdAt: r["created_at"] as Date,
    deleted,
    ...(deletedAt instanceof Date ? { deletedAt } : {}),
    ...(typeof deletedBy === "string" ? { deletedBy } : {}),
  };
}

function messagesOf(channelId: string, rows: readonly CqlRow[]): MessageRecord[] {
  return rows.map((r) => toMessage(channelId, r)).filter((m): m is MessageRecord => m !== undefined);
}

function toChange(channelId: string, r: CqlRow): ChangeRecord | undefined {
  const kind = r["kind"] as ChangeKind;
  const blob = r["event"];
  if (!CHANGE_KINDS.includes(kind) || !(blob instanceof Uint8Array)) return undefined;
  return {
    id: BigInt(String(r["id"])),
    channelId,
    kind,
    createdAt: r["created_at"] as Date,
    event: fromBinary(ChatEventSchema, blob),
  };
}
