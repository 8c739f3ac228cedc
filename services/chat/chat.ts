/**
 * The chat use cases on the ports (ChatStore, IdMinter, Delivery). Transport-neutral: module.ts
 * maps protobuf to these calls; every refusal is a DomainError naming the field.
 *
 * - The caller is always the authenticated user (an argument here, never a request field).
 *   A channel the caller is not in answers NotFound, exactly like a missing one.
 * - Every stored thing Sync returns gets its id from the minter *before* its write, and each
 *   write checks the id is young enough to land inside the settle window (domain/cursor.ts).
 * - Membership changes are compare-and-set on the channel version, retried on conflict after a
 *   fresh read and re-validation; each is one stored "member" change delivered to everyone who
 *   was or is in the channel. Owner hand-over is part of the LEFT change: its channel shows the
 *   successor (smallest joinedId) as owner, in the same event (no separate ROLE_CHANGED).
 * - Live delivery goes through the Delivery port only; it never throws and never waits.
 */
import { MemberLists } from "./member-lists.js";
import type { MessageNotifier } from "./offline-push.js";
import { randomBytes } from "node:crypto";
import type { ChatEvent } from "../../gen/switchboard/chat/v1/chat_pb.js";
import type { ChatConfig } from "../../platform/config.js";
import { DomainError, invalidArgument, isDomainError, notFound } from "../../platform/errors.js";
import type {
  Channel,
  ChangeKind,
  ChangeRecord,
  ChannelEvent,
  ChatStore,
  Delivery,
  HistoryAnchor,
  IdMinter,
  MemberRecord,
  MessageRecord,
  Role,
  SendClaims,
} from "./ports.js";
import { decodeCursor, encodeCursor, firstIdAt, horizon, tooOldToWrite, type SyncCursor } from "./domain/cursor.js";
import {
  deletedEvent,
  deliveredReceiptEvent,
  memberChangeEvent,
  messageEvent,
  readReceiptEvent,
  typingEvent,
  withCursor,
  type ChannelView,
  type MemberChangeKindName,
} from "./domain/events.js";
import { directChannelId, directPairKey, groupChannelIdFor, groupRequestHash, randomGroupChannelId } from "./domain/ids.js";
import { decodeChannelPageToken, encodeChannelPageToken } from "./domain/page-token.js";
import { SlidingWindowLimiter } from "./domain/rate-limit.js";
import { canDeleteMessage, canManageMembers, canRemove, successorOf } from "./domain/roles.js";
import {
  MAX_ADD_MEMBERS,
  distinctUserIds,
  pageSizeOf,
  validateChannelId,
  validateClientMessageId,
  validateDeviceId,
  validateGroupName,
  validateId,
  validateRequestId,
  validateText,
  validateUserIdField,
} from "./domain/validate.js";

export const UNREAD_CAP = 10_000;
export const LIST_DEFAULT = 50;
export const LIST_MAX = 100;
export const HISTORY_DEFAULT = 50;
export const HISTORY_MAX = 200;
export const SYNC_DEFAULT = 200;
export const SYNC_MAX = 500;
/** Member records kept by the default MemberLists, at most (~100 groups of 100). */
export const KEPT_MEMBER_RECORDS = 100_000;
/** Membership compare-and-set attempts before answering Aborted. */
export const MEMBERSHIP_ATTEMPTS = 5;

export interface ChatDeps {
  readonly store: ChatStore;
  readonly ids: IdMinter;
  readonly delivery: Delivery;
  readonly config: ChatConfig;
  /** Told of each new message after it is stored and delivered live (offline pushes). */
  readonly notifier?: MessageNotifier;
  /** Who stores a message sent twice under one client id; default the store's atomic claim. */
  readonly claims?: SendClaims;
  /** Wall clock, Unix ms (tests drive it). */
  readonly now?: () => number;
  readonly random?: (n: number) => Uint8Array;
  /** Member lists kept between calls; default kept for config.memberListMs. */
  readonly memberLists?: MemberLists;
}

export interface ChannelWithReads {
  readonly channel: Channel;
  readonly readUpToId: bigint;
  readonly unreadCount: number;
}

export interface SendResult {
  readonly message: MessageRecord;
  readonly duplicate: boolean;
}

export interface SyncResult {
  readonly events: readonly ChatEvent[];
  readonly nextCursor: string;
  readonly hasMore: boolean;
  readonly reset: boolean;
}

export class Chat {
  private readonly store: ChatStore;
  private readonly ids: IdMinter;
  private readonly delivery: Delivery;
  private readonly notifier: MessageNotifier | undefined;
  private readonly claims: SendClaims;
  readonly config: ChatConfig;
  private readonly now: () => number;
  private readonly random: (n: number) => Uint8Array;
  private readonly typing: SlidingWindowLimiter;
  private readonly memberLists: MemberLists;

  constructor(deps: ChatDeps) {
    this.store = deps.store;
    this.ids = deps.ids;
    this.delivery = deps.delivery;
    this.notifier = deps.notifier;
    this.claims = deps.claims ?? { claim: (m) => this.store.claimClientMessageId(m) };
    this.config = deps.config;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? ((n) => randomBytes(n));
    this.typing = new SlidingWindowLimiter(deps.config.typingPerWindow, deps.config.typingWindowMs);
    this.memberLists = deps.memberLists ?? new MemberLists({ ttlMs: deps.config.memberListMs, maxMembers: KEPT_MEMBER_RECORDS, now: this.now });
  }

  // ---- channels ---------------------------------------------------------------------------

  async createDirect(caller: string, peer: string): Promise<{ channel: Channel; created: boolean }> {
    validateUserIdField(peer, "peer_user_id");
    if (peer === caller) throw invalidArgument("peer_user_id", "is yourself (a direct channel needs another user)");
    const wanted = directChannelId(caller, peer);
    const existing = await this.store.getChannel(wanted);
    if (existing && existing.members.length === 2) return { channel: existing, created: false };
    await this.requireRoomFor([caller, peer]);
    const id = await this.store.claimDirect(directPairKey(caller, peer), wanted);
    const at = new Date(this.now());
    const eventId = this.freshId();
    const members = [caller, peer].map((u): MemberRecord => ({ userId: u, role: "member", joinedAt: at, joinedId: eventId }));
    const record = { id, type: "direct" as const, name: "", createdAt: at, createdBy: caller, version: 1 };
    const event = this.change(id, "member", eventId, at, memberChangeEvent(eventId, at, "created", [caller, peer], caller, { ...record, members, lastMessageId: 0n }));
    const created = await this.store.createChannel(record, members, event);
    this.memberLists.forget(id);
    const channel = await this.store.getChannel(id);
    if (!channel) throw new DomainError("Unavailable", "the direct channel could not be read back; retry");
    if (created) this.delivery.deliver([caller, peer], this.live(event.event));
    return { channel, created };
  }

  async createGroup(caller: string, name: string, memberIds: readonly string[], requestId: string): Promise<Channel> {
    validateGroupName(name);
    validateRequestId(requestId);
    const others = distinctUserIds(memberIds, "member_user_ids").filter((u) => u !== caller);
    if (others.length + 1 > this.config.maxGroupMembers) {
      throw invalidArgument("member_user_ids", `a group has at most ${this.config.maxGroupMembers} members, you included (asked for ${others.length + 1})`);
    }
    let id = randomGroupChannelId(this.random(24));
    if (requestId) {
      const hash = groupRequestHash(name, others);
      const stored = await this.store.claimGroupRequest(caller, requestId, { channelId: groupChannelIdFor(caller, requestId), requestHash: hash });
      if (stored.requestHash !== hash) {
        throw new DomainError("FailedPrecondition", "request_id: was already used to create a different group (name or members differ)", { field: "request_id" });
      }
      id = stored.channelId;
      const done = await this.store.getChannel(id);
      if (done) return done;
    }
    await this.requireRoomFor([caller, ...others]);
    const at = new Date(this.now());
    const eventId = this.freshId();
    const members: MemberRecord[] = [caller, ...others].map((u) => ({ userId: u, role: u === caller ? "owner" : "member", joinedAt: at, joinedId: eventId }));
    const record = { id, type: "group" as const, name, createdAt: at, createdBy: caller, version: 1 };
    const event = this.change(id, "member", eventId, at, memberChangeEvent(eventId, at, "created", members.map((m) => m.userId), caller, { ...record, members, lastMessageId: 0n }));
    const created = await this.store.createChannel(record, members, event);
    this.memberLists.forget(id);
    const channel = await this.store.getChannel(id);
    if (!channel) throw new DomainError("Unavailable", "the new group could not be read back; retry");
    if (created) this.delivery.deliver(members.map((m) => m.userId), this.live(event.event));
    return channel;
  }

  async getChannel(caller: string, channelId: string): Promise<{ channel: Channel; readUpToId: bigint }> {
    const channel = await this.memberChannel(caller, channelId);
    const marks = await this.store.readMarkers(caller, [channel.id]);
    return { channel, readUpToId: marks.get(channel.id) ?? 0n };
  }

  async addMembers(caller: string, channelId: string, userIds: readonly string[]): Promise<{ channel: Channel; added: string[] }> {
    validateChannelId(channelId);
    if (userIds.length === 0) throw invalidArgument("user_ids", "is required (1-100 user ids)");
    if (userIds.length > MAX_ADD_MEMBERS) throw invalidArgument("user_ids", `has more than ${MAX_ADD_MEMBERS} user ids`);
    const wanted = distinctUserIds(userIds, "user_ids");
    let added: string[] = [];
    const channel = await this.changeMembers(caller, channelId, async (ch, me) => {
      // After the membership check: a non-member learns nothing about the channel, not even that
      // they are not in it.
      if (wanted.includes(caller)) throw invalidArgument("user_ids", "contains yourself (you are already a member)");
      requireGroup(ch, "add members");
      if (!canManageMembers(me.role)) throw new DomainError("PermissionDenied", "only the group's owner or an admin can add members");
      const present = new Set(ch.members.map((m) => m.userId));
      added = wanted.filter((u) => !present.has(u));
      if (added.length === 0) return undefined;
      if (ch.members.length + added.length > this.config.maxGroupMembers) {
        throw new DomainError(
          "FailedPrecondition",
          `user_ids: the group would have ${ch.members.length + added.length} members; at most ${this.config.maxGroupMembers} are allowed`,
          { field: "user_ids" },
        );
      }
      await this.requireRoomFor(added);
      return { kind: "added", users: added, add: added };
    });
    return { channel, added };
  }

  async removeMember(caller: string, channelId: string, userId: string): Promise<void> {
    validateChannelId(channelId);
    validateUserIdField(userId, "user_id");
    if (userId === caller) throw invalidArgument("user_id", "is yourself (use LeaveChannel)");
    await this.changeMembers(caller, channelId, async (ch, me) => {
      requireGroup(ch, "remove members");
      if (!canManageMembers(me.role)) throw new DomainError("PermissionDenied", "only the group's owner or an admin can remove members");
      const target = ch.members.find((m) => m.userId === userId);
      if (!target) return undefined;
      if (!canRemove(me.role, target.role)) throw new DomainError("PermissionDenied", "an admin cannot remove the group's owner");
      return { kind: "removed", users: [userId], remove: [userId] };
    });
  }

  async leave(caller: string, channelId: string): Promise<void> {
    validateChannelId(channelId);
    try {
      await this.changeMembers(caller, channelId, async (ch, me) => {
        requireGroup(ch, "be left");
        const heir = me.role === "owner" ? successorOf(ch.members, caller) : undefined;
        return { kind: "left", users: [caller], remove: [caller], ...(heir ? { roles: [{ userId: heir.userId, role: "owner" as Role }] } : {}) };
      });
    } catch (e) {
      // A retried leave whose first attempt landed: the caller is gone, which is what they asked.
      if (isDomainError(e) && e.kind === "NotFound") {
        const mine = (await this.store.userChannels(caller)).find((u) => u.channelId === channelId);
        if (mine?.leftId !== undefined) return;
      }
      throw e;
    }
  }

  async listMine(caller: string, pageSize: number, pageToken: string): Promise<{ channels: ChannelWithReads[]; nextPageToken: string }> {
    const size = pageSizeOf(pageSize, "page_size", LIST_DEFAULT, LIST_MAX);
    const offset = decodeChannelPageToken(caller, pageToken);
    const rows = (await this.store.userChannels(caller)).filter((u) => u.leftId === undefined);
    const joined = new Map(rows.map((r) => [r.channelId, r.joinedId]));
    const channels = (await Promise.all(rows.map((r) => this.store.getChannel(r.channelId)))).filter((c): c is Channel => c !== undefined);
    // Activity = the newest message, or joining (a new channel shows on top); reading a channel
    // or a delete must not move it up (lastEventId would: receipts are stored changes).
    const activity = (c: Channel) => maxBig(c.lastMessageId, joined.get(c.id) ?? 0n);
    channels.sort((a, b) => {
      const x = activity(a);
      const y = activity(b);
      return x === y ? (a.id < b.id ? -1 : 1) : x > y ? -1 : 1;
    });
    const page = channels.slice(offset, offset + size);
    const marks = await this.store.readMarkers(caller, page.map((c) => c.id));
    const out = await Promise.all(
      page.map(async (channel): Promise<ChannelWithReads> => {
        const readUpToId = marks.get(channel.id) ?? 0n;
        const from = maxBig(readUpToId, joined.get(channel.id) ?? 0n);
        return { channel, readUpToId, unreadCount: await this.store.countUnread(channel.id, caller, from, UNREAD_CAP) };
      }),
    );
    const next = offset + size < channels.length ? encodeChannelPageToken(caller, offset + size) : "";
    return { channels: out, nextPageToken: next };
  }

  // ---- messages ---------------------------------------------------------------------------

  async send(caller: string, channelId: string, clientMessageId: string, text: string): Promise<SendResult> {
    validateChannelId(channelId);
    validateClientMessageId(clientMessageId);
    validateText(text);
    // The id is the message's time, taken on arrival; slow steps before the write may age it.
    let id = this.mint();
    const channel = await this.memberList(caller, channelId);
    if (tooOldToWrite(id, this.now(), this.config.settleWindowMs, this.config.writeTimeoutMs)) id = this.mint();
    const message: MessageRecord = { id, channelId: channel.id, senderId: caller, clientMessageId, text, createdAt: new Date(this.now()), deleted: false };
    const claim = await this.claims.claim(message);
    if (!claim.claimed) return { message: await this.healRetry(claim.existing, channel), duplicate: true };
    // The claim took so long that the row may land behind a Sync cursor: the row keeps the
    // claimed id (a retry must find it), and a change at a fresh id carries it to Sync.
    const late = tooOldToWrite(id, this.now(), this.config.settleWindowMs, this.config.writeTimeoutMs);
    await this.store.putMessage(message);
    if (late) await this.reannounce(message);
    this.delivery.deliver(memberIds(channel), this.live(messageEvent(message, message.id, message.createdAt)));
    this.notifier?.messageSent(message, memberIds(channel));
    return { message, duplicate: false };
  }

  async history(caller: string, channelId: string, anchor: HistoryAnchor, pageSize: number): Promise<{ messages: readonly MessageRecord[]; hasMore: boolean }> {
    validateChannelId(channelId);
    if ("beforeId" in anchor) validateId(anchor.beforeId, "before_id");
    if ("afterId" in anchor) validateId(anchor.afterId, "after_id");
    const size = pageSizeOf(pageSize, "page_size", HISTORY_DEFAULT, HISTORY_MAX);
    // The membership check and the page are read at once (one round trip of latency instead of
    // two); the page is dropped unread unless the caller is a member, whose error comes first.
    const [member, page] = await Promise.allSettled([this.memberList(caller, channelId), this.store.history(channelId, anchor, size)]);
    if (member.status === "rejected") throw member.reason;
    if (page.status === "rejected") throw page.reason;
    return { messages: page.value.messages, hasMore: page.value.hasMore };
  }

  async deleteMessage(caller: string, channelId: string, messageId: bigint): Promise<void> {
    validateChannelId(channelId);
    validateId(messageId, "message_id");
    const channel = await this.memberChannel(caller, channelId);
    const me = channel.members.find((m) => m.userId === caller)!;
    const msg = await this.store.getMessage(channel.id, messageId);
    if (!msg) throw notFound(`message ${messageId} in channel ${channelId}`);
    if (!canDeleteMessage(channel.type, me.role, msg.senderId === caller)) {
      throw new DomainError("PermissionDenied", "only the sender, or the group's owner or an admin, can delete this message");
    }
    if (msg.deleted) return;
    const at = new Date(this.now());
    await this.store.deleteMessage(channel.id, messageId, caller, at);
    const eventId = this.freshId();
    const change = this.change(channel.id, "deleted", eventId, at, deletedEvent(eventId, at, channel.id, messageId, caller));
    await this.store.appendChange(change);
    this.delivery.deliver(memberIds(channel), this.live(change.event));
  }

  // ---- receipts and typing ----------------------------------------------------------------

  async markRead(caller: string, channelId: string, upToId: bigint): Promise<bigint> {
    validateChannelId(channelId);
    validateId(upToId, "up_to_id");
    const channel = await this.memberChannel(caller, channelId);
    refuseFuture(channel, upToId);
    const before = (await this.store.readMarkers(caller, [channel.id])).get(channel.id) ?? 0n;
    const after = await this.store.advanceReadMarker(caller, channel.id, upToId);
    if (after > before) {
      const at = new Date(this.now());
      const eventId = this.freshId();
      const change = this.change(channel.id, "receipt", eventId, at, readReceiptEvent(eventId, at, channel.id, caller, after));
      await this.store.appendChange(change);
      this.delivery.deliver(memberIds(channel), this.live(change.event));
    }
    return after;
  }

  async markDelivered(caller: string, deviceId: string, channelId: string, upToId: bigint): Promise<bigint> {
    validateDeviceId(deviceId);
    validateChannelId(channelId);
    validateId(upToId, "up_to_id");
    const channel = await this.memberChannel(caller, channelId);
    refuseFuture(channel, upToId);
    const after = await this.store.advanceDeliveredMarker(caller, deviceId, channel.id, upToId);
    if (after === upToId) {
      this.delivery.deliver(memberIds(channel), deliveredReceiptEvent(new Date(this.now()), channel.id, caller, deviceId, after));
    }
    return after;
  }

  async sendTyping(caller: string, channelId: string, active: boolean): Promise<void> {
    validateChannelId(channelId);
    const channel = await this.memberList(caller, channelId);
    const wait = this.typing.take(`${caller}\u0000${channel.id}`, this.now());
    if (wait > 0) {
      throw new DomainError(
        "ResourceExhausted",
        `typing indicators are limited to ${this.config.typingPerWindow} per ${this.config.typingWindowMs} ms per channel; retry in ${wait} ms`,
        { retryAfterMs: wait },
      );
    }
    const others = memberIds(channel).filter((u) => u !== caller);
    this.delivery.deliver(others, typingEvent(new Date(this.now()), channel.id, caller, active));
  }

  // ---- sync -------------------------------------------------------------------------------

  /**
   * Everything the caller missed since `cursor`, across their channels, in id order: first the
   * settled range (settled, horizon], then (when that is exhausted) the unsettled tail
   * (max(tail, horizon), now]. next_cursor.settled never passes the horizon, so a write that lands
   * late (below the horizon's successor) is still ahead of it; tail events come again once
   * settled, which clients dedupe by event_id.
   */
  async sync(caller: string, deviceId: string, cursor: string, pageSize: number): Promise<SyncResult> {
    validateDeviceId(deviceId);
    const size = pageSizeOf(pageSize, "page_size", SYNC_DEFAULT, SYNC_MAX);
    const from = cursor ? decodeCursor(cursor) : undefined;
    const now = this.now();
    const h = horizon(now, this.config.settleWindowMs);
    const start = encodeCursor({ settled: h, tail: 0n });
    if (!from) return { events: [], nextCursor: start, hasMore: false, reset: false };
    // Clocks of chat servers differ a little; a cursor a minute ahead of ours was never issued.
    if (from.settled > firstIdAt(now + 60_000) || from.tail > firstIdAt(now + 60_000)) {
      throw invalidArgument("cursor", "is from the future (pass next_cursor or ChatEvent.cursor unchanged)");
    }
    if (this.config.retentionDays > 0 && from.settled < firstIdAt(now - this.config.retentionDays * 86_400_000)) {
      return { events: [], nextCursor: start, hasMore: false, reset: true };
    }
    const ranges = await this.syncRanges(caller);
    const settled = await this.collect(ranges, from.settled < h ? from.settled : h, h, size);
    if (settled.length > size) {
      const page = settled.slice(0, size);
      return { events: page.map((e) => this.syncEvent(e, { settled: e.id, tail: from.tail })), nextCursor: encodeCursor({ settled: page.at(-1)!.id, tail: from.tail }), hasMore: true, reset: false };
    }
    const events = settled.map((e) => this.syncEvent(e, { settled: e.id, tail: from.tail }));
    const room = size - settled.length;
    const tailFrom = maxBig(from.tail, h);
    const tail = room > 0 ? await this.collect(ranges, tailFrom, undefined, room) : [];
    const tailPage = tail.slice(0, room);
    const newTail = tailPage.at(-1)?.id ?? from.tail;
    for (const e of tailPage) events.push(this.syncEvent(e, { settled: h, tail: e.id }));
    const hasMore = tail.length > room || (room === 0 && (await this.collect(ranges, tailFrom, undefined, 1)).length > 0);
    return { events, nextCursor: encodeCursor({ settled: h, tail: newTail }), hasMore, reset: false };
  }

  // ---- internals --------------------------------------------------------------------------

  /** Per channel: the id range the caller may see (from their join to their leave). */
  private async syncRanges(caller: string): Promise<{ channelId: string; from: bigint; to?: bigint; last: bigint }[]> {
    const rows = await this.store.userChannels(caller);
    const channels = await Promise.all(rows.map((r) => this.store.getChannel(r.channelId)));
    const out: { channelId: string; from: bigint; to?: bigint; last: bigint }[] = [];
    rows.forEach((r, i) => {
      const c = channels[i];
      if (!c) return;
      // joinedId is the event that added the caller: it is theirs to see.
      out.push({ channelId: r.channelId, from: r.joinedId - 1n, ...(r.leftId !== undefined ? { to: r.leftId } : {}), last: c.lastEventId });
    });
    return out;
  }

  /** Up to limit + 1 events with after < id (<= until), merged across channels in id order. */
  private async collect(
    ranges: readonly { channelId: string; from: bigint; to?: bigint; last: bigint }[],
    after: bigint,
    until: bigint | undefined,
    limit: number,
  ): Promise<ChannelEvent[]> {
    const reads = ranges.map(async (r) => {
      const lo = maxBig(after, r.from);
      const hi = until === undefined ? r.to : r.to === undefined ? until : minBig(until, r.to);
      // lastEventId only bounds what is visible now; a late write still raises it before it is readable.
      if (r.last <= lo || (hi !== undefined && hi <= lo)) return [];
      return this.store.eventsAfter(r.channelId, lo, Math.min(limit + 1, 1000), hi);
    });
    const all = (await Promise.all(reads)).flat();
    all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return all.slice(0, limit + 1);
  }

  private syncEvent(e: ChannelEvent, c: SyncCursor): ChatEvent {
    const cursor = encodeCursor(c);
    return e.kind === "message" ? messageEvent(e.message, e.id, e.message.createdAt, cursor) : withCursor(e.change.event, cursor);
  }

  /** A live event carries the cursor at the current horizon (anything older reaches the device via Sync). */
  private live(e: ChatEvent): ChatEvent {
    return withCursor(e, encodeCursor({ settled: horizon(this.now(), this.config.settleWindowMs), tail: 0n }));
  }

  /** A retried send: the first message, its row healed when the first write never landed. */
  private async healRetry(existing: MessageRecord, channel: MemberList): Promise<MessageRecord> {
    const row = await this.store.getMessage(channel.id, existing.id);
    if (row) return row;
    await this.store.putMessage(existing);
    if (tooOldToWrite(existing.id, this.now(), this.config.settleWindowMs, this.config.writeTimeoutMs)) await this.reannounce(existing);
    this.delivery.deliver(memberIds(channel), this.live(messageEvent(existing, existing.id, existing.createdAt)));
    return existing;
  }

  /** Stores a "message" change at a fresh id so Sync cursors already past the message still get it. */
  private async reannounce(m: MessageRecord): Promise<void> {
    const eventId = this.freshId();
    await this.store.appendChange(this.change(m.channelId, "message", eventId, new Date(this.now()), messageEvent(m, eventId, m.createdAt)));
  }

  private change(channelId: string, kind: ChangeKind, id: bigint, at: Date, event: ChatEvent): ChangeRecord {
    return { id, channelId, kind, createdAt: at, event };
  }

  private mint(): bigint {
    try {
      return this.ids.next();
    } catch (e) {
      if (isDomainError(e)) {
        if (e.kind === "Unavailable") throw new DomainError("Unavailable", "message ids cannot be issued right now (no worker id held); retry", { retryAfterMs: 1000 }, { cause: e });
        throw new DomainError("Unavailable", `message ids cannot be issued right now: ${e.message}`, { retryAfterMs: e.details.retryAfterMs ?? 1000 }, { cause: e });
      }
      throw e;
    }
  }

  /** An id for a write that starts now. */
  private freshId(): bigint {
    return this.mint();
  }

  /** Only the members, when the caller is one (kept a short while: member-lists.ts). */
  private async memberList(caller: string, channelId: string): Promise<MemberList> {
    validateChannelId(channelId);
    const members = await this.memberLists.get(channelId, caller, () => this.store.getMembers(channelId));
    if (!members.some((m) => m.userId === caller)) throw notFound(`channel ${channelId}`);
    return { id: channelId, members };
  }

  /** The channel, when the caller is a member; NotFound otherwise (existence is not revealed). */
  private async memberChannel(caller: string, channelId: string): Promise<Channel> {
    validateChannelId(channelId);
    const channel = await this.store.getChannel(channelId);
    if (!channel || !channel.members.some((m) => m.userId === caller)) throw notFound(`channel ${channelId}`);
    return channel;
  }

  private async requireRoomFor(users: readonly string[]): Promise<void> {
    const counts = await Promise.all(users.map(async (u) => (await this.store.userChannels(u)).filter((r) => r.leftId === undefined).length));
    counts.forEach((n, i) => {
      if (n >= this.config.maxChannelsPerUser) {
        throw new DomainError("FailedPrecondition", `user ${users[i]} is already in ${n} channels (at most ${this.config.maxChannelsPerUser})`);
      }
    });
  }

  /**
   * Read, decide, compare-and-set; on "conflict" read again and decide again (the decision may
   * change: the cap, the roles), up to MEMBERSHIP_ATTEMPTS, then Aborted.
   */
  private async changeMembers(
    caller: string,
    channelId: string,
    decide: (ch: Channel, me: MemberRecord) => Promise<PlannedChange | undefined>,
  ): Promise<Channel> {
    for (let attempt = 0; attempt < MEMBERSHIP_ATTEMPTS; attempt++) {
      const ch = await this.memberChannel(caller, channelId);
      const me = ch.members.find((m) => m.userId === caller)!;
      const plan = await decide(ch, me);
      if (!plan) return ch;
      const at = new Date(this.now());
      const eventId = this.freshId();
      const add = (plan.add ?? []).map((u): MemberRecord => ({ userId: u, role: "member", joinedAt: at, joinedId: eventId }));
      const after = applied(ch, add, plan.remove ?? [], plan.roles ?? []);
      const event = this.change(ch.id, "member", eventId, at, memberChangeEvent(eventId, at, plan.kind, plan.users, caller, after));
      const r = await this.store.changeMembership({
        channelId: ch.id,
        expectedVersion: ch.version,
        ...(add.length ? { add } : {}),
        ...(plan.remove?.length ? { remove: plan.remove } : {}),
        ...(plan.roles?.length ? { roles: plan.roles } : {}),
        event,
      });
      if (r === "ok") {
        this.memberLists.forget(ch.id);
        const everyone = new Set([...memberIds(ch), ...after.members.map((m) => m.userId)]);
        this.delivery.deliver([...everyone], this.live(event.event));
        return (await this.store.getChannel(ch.id)) ?? { ...ch, ...after, version: ch.version + 1, lastEventId: eventId };
      }
    }
    throw new DomainError("Aborted", "the channel's membership changed concurrently too many times; retry");
  }
}

interface PlannedChange {
  readonly kind: MemberChangeKindName;
  readonly users: readonly string[];
  readonly add?: readonly string[];
  readonly remove?: readonly string[];
  readonly roles?: readonly { readonly userId: string; readonly role: Role }[];
}

function applied(ch: Channel, add: readonly MemberRecord[], remove: readonly string[], roles: readonly { userId: string; role: Role }[]): ChannelView & { members: MemberRecord[] } {
  const gone = new Set(remove);
  const newRole = new Map(roles.map((r) => [r.userId, r.role]));
  const members = [...ch.members.filter((m) => !gone.has(m.userId)), ...add].map((m) => (newRole.has(m.userId) ? { ...m, role: newRole.get(m.userId)! } : m));
  return { id: ch.id, type: ch.type, name: ch.name, createdAt: ch.createdAt, members, lastMessageId: ch.lastMessageId };
}

function requireGroup(ch: Channel, what: string): void {
  if (ch.type !== "group") throw new DomainError("FailedPrecondition", `a direct channel cannot ${what}; only groups can`);
}

function refuseFuture(ch: Channel, upToId: bigint): void {
  if (upToId > ch.lastMessageId) throw invalidArgument("up_to_id", "is after the newest message of the channel");
}

interface MemberList {
  readonly id: string;
  readonly members: readonly MemberRecord[];
}

const memberIds = (ch: { readonly members: readonly MemberRecord[] }): string[] => ch.members.map((m) => m.userId);
const maxBig = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);
