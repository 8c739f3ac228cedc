/**
 * Chat ports. The domain (services/chat/domain/) and the use cases (services/chat/chat.ts)
 * only see these interfaces; adapters live in services/chat/adapters/ (memory and Cassandra/
 * ScyllaDB), and services/chat/chat-store.conformance.ts holds every store to the same contract
 * on both engines.
 *
 * Ids: every stored thing that Sync can return (a message, or a change: delete, read receipt,
 * membership change, late re-announce) has a 64-bit snowflake id from the IdMinter, unique
 * system-wide and time-sortable. `bigint` everywhere; 0n means "none".
 *
 * Errors: a backend that cannot be reached -> DomainError "Unavailable" (platform/errors.ts);
 * for writes the outcome is then unknown and the caller retries (every write is idempotent).
 */
import type { ChatEvent } from "../../gen/switchboard/chat/v1/chat_pb.js";

export type ChannelType = "direct" | "group";
export type Role = "owner" | "admin" | "member";

export interface ChannelRecord {
  /** Opaque, 1..64 chars of [A-Za-z0-9_-]. Direct channels: derived from the pair (domain/ids.ts). */
  readonly id: string;
  readonly type: ChannelType;
  /** Group name; "" for direct channels. */
  readonly name: string;
  readonly createdAt: Date;
  readonly createdBy: string;
  /**
   * Membership version: 1 at creation, +1 per membership change (add, remove, leave, role).
   * Membership changes are compare-and-set on it (a lightweight transaction in Cassandra), so
   * concurrent changes cannot push a group over its cap or lose an owner hand-over.
   */
  readonly version: number;
}

export interface MemberRecord {
  readonly userId: string;
  readonly role: Role;
  readonly joinedAt: Date;
  /** Id of the change event that added the member (their Sync and unread start there). */
  readonly joinedId: bigint;
}

export interface Channel extends ChannelRecord {
  /** Current members (at most the member cap), in join order (joinedId ascending). */
  readonly members: readonly MemberRecord[];
  /** Newest message id, 0n if none. */
  readonly lastMessageId: bigint;
  /** Newest message or change id, 0n if none (Sync skips channels with nothing after the cursor). */
  readonly lastEventId: bigint;
}

/** One row of a user's channel list: current memberships and the ones they left or lost. */
export interface UserChannel {
  readonly channelId: string;
  readonly joinedId: bigint;
  /** Id of the change event that removed the user (they still Sync up to and including it); absent while a member. */
  readonly leftId?: bigint;
}

export interface MessageRecord {
  readonly id: bigint;
  readonly channelId: string;
  readonly senderId: string;
  readonly clientMessageId: string;
  /** "" once deleted. */
  readonly text: string;
  readonly createdAt: Date;
  readonly deleted: boolean;
  readonly deletedAt?: Date;
  readonly deletedBy?: string;
}

export type ChangeKind = "deleted" | "receipt" | "member" | "message";

/**
 * A stored non-message event of a channel. `event` is the ChatEvent members receive (its
 * event_id equals `id`, its cursor is empty: cursors are per reader). "message" changes
 * re-announce a message whose write may have landed after the settle window (a healed retry):
 * Sync returns them at their own, newer id.
 */
export interface ChangeRecord {
  readonly id: bigint;
  readonly channelId: string;
  readonly kind: ChangeKind;
  readonly createdAt: Date;
  readonly event: ChatEvent;
}

/** What Sync reads per channel, ascending by id. */
export type ChannelEvent =
  | { readonly kind: "message"; readonly id: bigint; readonly message: MessageRecord }
  | { readonly kind: "change"; readonly id: bigint; readonly change: ChangeRecord };

export type MembershipChange = {
  readonly channelId: string;
  /** The version read; the change applies only while the stored version still equals it. */
  readonly expectedVersion: number;
  readonly add?: readonly MemberRecord[];
  /** Users removed (or leaving); their UserChannel gets leftId = event.id. */
  readonly remove?: readonly string[];
  /** Role changes of remaining members (owner hand-over, promotions). */
  readonly roles?: readonly { readonly userId: string; readonly role: Role }[];
  /** The MemberChange event, stored in the channel's change log. */
  readonly event: ChangeRecord;
};

export type HistoryAnchor = { readonly beforeId: bigint } | { readonly afterId: bigint } | { readonly newest: true };

export interface HistoryPage {
  /** Ascending by id. Deleted messages are included as tombstones (text ""). */
  readonly messages: readonly MessageRecord[];
  /** More messages exist beyond the page in the direction asked (older for before/newest, newer for after). */
  readonly hasMore: boolean;
}

export type ClaimResult = { readonly claimed: true } | { readonly claimed: false; readonly existing: MessageRecord };

/**
 * Decides which of several sends of one (channel, sender, client message id) stores a message:
 * exactly one is `claimed`, every other gets that one's message (services/chat/adapters/locked-claims.ts).
 */
export interface SendClaims {
  claim(message: MessageRecord): Promise<ClaimResult>;
}

/**
 * ChatStore: channels, members, messages, changes, markers. Cassandra tables are designed from
 * these calls (services/chat/migrations.ts); the memory twin keeps Maps.
 *
 * Channels and members
 * - `createChannel(channel, members, event)`: stores a new channel (version 1), its members, each
 *   member's UserChannel (joinedId = event.id) and the CREATED change. Overwrites nothing: a
 *   second call with the same id is a no-op returning false.
 * - `claimDirect(pairKey, channelId)`: atomically maps a user pair to a channel id; returns the
 *   id now stored (ours when we won). The winner then calls createChannel (idempotent), so a
 *   crash between the two is healed by the next CreateDirectChannel of either user.
 * - `claimGroupRequest(creatorId, requestId, channelId, requestHash)`: idempotent group creation
 *   (kept 24 h); returns the record now stored.
 * - `getChannel(id)`: channel with members and last ids, or undefined.
 * - `getMember(channelId, userId)`: one member or undefined.
 * - `getMembers(channelId)`: the current members in join order (joinedId ascending), [] for an
 *   unknown channel: the membership check and fan-out list of a send, one read.
 * - `changeMembership(change)`: compare-and-set on the version; "conflict" when another change
 *   won (the caller re-reads and retries). Applies adds/removes/roles, the users' UserChannel
 *   rows (leftId for removed users; a re-added user gets a new joinedId and no leftId), stores
 *   the event and bumps lastEventId.
 * - `userChannels(userId)`: every channel the user is or was in (leftId set for past ones).
 *
 * Messages
 * - `claimClientMessageId(message)`: atomically records (channelId, senderId, clientMessageId)
 *   -> the whole message for 24 h; `{claimed: false, existing}` when a message was already
 *   claimed under that key (existing carries the first message's id, text and time).
 * - `findClaim(channelId, senderId, clientMessageId)`: the message claimed under that key within
 *   the claim TTL (the stored row when it landed, else the claim's record), or undefined.
 * - `recordClaim(message, atMicros)`: a plain (not atomic) write of the claim, for callers that
 *   serialize claims themselves (SendClaims); of two records of one key the larger `atMicros`
 *   wins, whatever order they land in.
 * - `putMessage(message)`: upsert of the message row (idempotent for the same id and content),
 *   its time bucket in the channel's bucket index, and the channel's lastMessageId/lastEventId
 *   (max semantics: a smaller id never lowers them). The row is readable by getMessage, history
 *   and eventsAfter when the promise resolves.
 * - `getMessage(channelId, id)`.
 * - `history(channelId, anchor, limit)`: limit 1..500. Over time-bucketed partitions: only
 *   buckets that hold messages are read (a channel whose messages are years apart costs one
 *   bucket-index read plus one read per non-empty bucket touched).
 * - `deleteMessage(channelId, id, by, at)`: removes the text from storage and marks the row
 *   deleted; false when there is no such message. Deleting twice is a no-op returning true.
 * - `appendChange(change)`: stores the change in the channel's (bucketed) change log and bumps
 *   lastEventId (max semantics).
 * - `eventsAfter(channelId, afterId, limit, untilId?)`: messages and changes with
 *   afterId < id (<= untilId when given), ascending, at most limit (1..1000). Deleted messages
 *   appear as tombstones.
 * - `countUnread(channelId, userId, afterId, cap)`: messages with id > afterId not sent by
 *   userId and not deleted, counting at most `cap`.
 *
 * Markers (monotonic: a smaller id never lowers the stored one; each returns the effective value)
 * - `advanceReadMarker(userId, channelId, upToId)`, `readMarkers(userId, channelIds)` (0n when none).
 * - `advanceDeliveredMarker(userId, deviceId, channelId, upToId)`.
 */
export interface ChatStore {
  createChannel(channel: ChannelRecord, members: readonly MemberRecord[], event: ChangeRecord): Promise<boolean>;
  claimDirect(pairKey: string, channelId: string): Promise<string>;
  claimGroupRequest(
    creatorId: string,
    requestId: string,
    record: { readonly channelId: string; readonly requestHash: string },
  ): Promise<{ readonly channelId: string; readonly requestHash: string }>;
  getChannel(id: string): Promise<Channel | undefined>;
  getMember(channelId: string, userId: string): Promise<MemberRecord | undefined>;
  getMembers(channelId: string): Promise<readonly MemberRecord[]>;
  changeMembership(change: MembershipChange): Promise<"ok" | "conflict">;
  userChannels(userId: string): Promise<readonly UserChannel[]>;

  claimClientMessageId(message: MessageRecord): Promise<ClaimResult>;
  findClaim(channelId: string, senderId: string, clientMessageId: string): Promise<MessageRecord | undefined>;
  recordClaim(message: MessageRecord, atMicros: bigint): Promise<void>;
  putMessage(message: MessageRecord): Promise<void>;
  getMessage(channelId: string, id: bigint): Promise<MessageRecord | undefined>;
  history(channelId: string, anchor: HistoryAnchor, limit: number): Promise<HistoryPage>;
  deleteMessage(channelId: string, id: bigint, by: string, at: Date): Promise<boolean>;
  appendChange(change: ChangeRecord): Promise<void>;
  eventsAfter(channelId: string, afterId: bigint, limit: number, untilId?: bigint): Promise<readonly ChannelEvent[]>;
  countUnread(channelId: string, userId: string, afterId: bigint, cap: number): Promise<number>;

  advanceReadMarker(userId: string, channelId: string, upToId: bigint): Promise<bigint>;
  readMarkers(userId: string, channelIds: readonly string[]): Promise<ReadonlyMap<string, bigint>>;
  advanceDeliveredMarker(userId: string, deviceId: string, channelId: string, upToId: bigint): Promise<bigint>;

  close?(): Promise<void>;
}

/** Time-sortable ids (snowflake: services/tokenrange/snowflake.ts), worker ids leased from token-range over gRPC. */
export interface IdMinter {
  /** A new id, strictly greater than every id this minter issued. Throws DomainError "Unavailable" while no worker id is held. */
  next(): bigint;
  close?(): Promise<void>;
}

/** A device's live stream as the delivery port sees it. */
export interface LiveStream {
  readonly userId: string;
  readonly deviceId: string;
  /** Queues an event; the stream ends itself as a slow consumer when its outbox is full. */
  push(event: ChatEvent): void;
  /** Events waiting in its outbox (metrics). */
  readonly queued?: number;
}

/**
 * Delivery port: hand an event to the connected devices of some users. The one-server adapter
 * (adapters/local-delivery.ts) holds the streams of this process; routing between chat servers
 * (NATS) is added beside it later without touching the use cases.
 * - `attach(stream)`: registers a device stream; a previous stream of the same (user, device) is
 *   returned so the caller can end it (ABORTED: replaced). `detach` removes exactly that stream.
 * - `deliver(userIds, event, except?)`: pushes to every attached stream of those users, except
 *   the one device given (the sender's own device for its own message is still delivered: the
 *   caller decides). Never throws, never waits for a slow stream.
 */
export interface Delivery {
  attach(stream: LiveStream): LiveStream | undefined;
  detach(stream: LiveStream): void;
  deliver(userIds: readonly string[], event: ChatEvent, except?: { readonly userId: string; readonly deviceId: string }): void;
  /** Connected streams (metrics, tests). */
  size(): number;
}
