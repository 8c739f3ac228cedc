import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ChatEventSchema } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { announcedMessage, tombstoneAnnounce } from "./announce.js";
import type {
  Channel,
  ChannelEvent,
  ChannelRecord,
  ChangeRecord,
  ChatStore,
  ClaimResult,
  HistoryAnchor,
  HistoryPage,
  MemberRecord,
  MembershipChange,
  MessageRecord,
  UserChannel,
} from "../ports.js";

/** How long claims (group requests, client message ids) are kept, as in the Cassandra TTLs. */
export const CLAIM_TTL_MS = 24 * 3600 * 1000;

interface StoredChannel {
  record: ChannelRecord;
  version: number;
  members: Map<string, MemberRecord>;
}

/** An id-sorted log: ids mostly arrive in order, so inserts are appends. */
class IdLog<T> {
  readonly ids: bigint[] = [];
  readonly byId = new Map<bigint, T>();

  put(id: bigint, value: T): void {
    if (!this.byId.has(id)) {
      let i = this.ids.length;
      while (i > 0 && this.ids[i - 1]! > id) i--;
      this.ids.splice(i, 0, id);
    }
    this.byId.set(id, value);
  }

  /** Index of the first id > afterId. */
  firstAfter(afterId: bigint): number {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ids[mid]! <= afterId) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * In-process ChatStore (memory engine and unit tests): Maps and id-sorted logs, no I/O. Same
 * contract as the Cassandra adapter (chat-store.conformance.ts); claims expire after 24 h on
 * the injected clock.
 */
export class MemoryChatStore implements ChatStore {
  private readonly channels = new Map<string, StoredChannel>();
  private readonly lastIds = new Map<string, { message: bigint; event: bigint }>();
  private readonly userRows = new Map<string, Map<string, UserChannel>>();
  private readonly messages = new Map<string, IdLog<MessageRecord>>();
  private readonly changes = new Map<string, IdLog<ChangeRecord>>();
  /** channel + message id -> ids of the "message" changes re-announcing it (scrubbed on delete). */
  private readonly announces = new Map<string, bigint[]>();
  private readonly directPairs = new Map<string, string>();
  private readonly groupRequests = new Map<string, { record: { channelId: string; requestHash: string }; expiresAt: number }>();
  /** `at`: the write time of a recorded claim (larger wins, as on Cassandra); atomic claims use 0. */
  private readonly clientIds = new Map<string, { message: MessageRecord; expiresAt: number; at: bigint }>();
  private readonly readMarks = new Map<string, bigint>();
  private readonly deliveredMarks = new Map<string, bigint>();

  constructor(private readonly now: () => number = Date.now) {}

  async createChannel(channel: ChannelRecord, members: readonly MemberRecord[], event: ChangeRecord): Promise<boolean> {
    if (this.channels.has(channel.id)) return false;
    this.channels.set(channel.id, {
      record: { ...channel, version: 1 },
      version: 1,
      members: new Map(members.map((m) => [m.userId, { ...m }])),
    });
    for (const m of members) this.userRow(m.userId).set(channel.id, { channelId: channel.id, joinedId: event.id });
    this.storeChange(event);
    return true;
  }

  async claimDirect(pairKey: string, channelId: string): Promise<string> {
    const cur = this.directPairs.get(pairKey);
    if (cur !== undefined) return cur;
    this.directPairs.set(pairKey, channelId);
    return channelId;
  }

  async claimGroupRequest(
    creatorId: string,
    requestId: string,
    record: { readonly channelId: string; readonly requestHash: string },
  ): Promise<{ readonly channelId: string; readonly requestHash: string }> {
    const key = `${creatorId}\u0000${requestId}`;
    const cur = this.groupRequests.get(key);
    if (cur && cur.expiresAt > this.now()) return { ...cur.record };
    this.groupRequests.set(key, { record: { ...record }, expiresAt: this.now() + CLAIM_TTL_MS });
    return { ...record };
  }

  async getChannel(id: string): Promise<Channel | undefined> {
    const c = this.channels.get(id);
    if (!c) return undefined;
    const last = this.lastIds.get(id);
    return {
      ...c.record,
      version: c.version,
      members: [...c.members.values()].sort((a, b) => cmp(a.joinedId, b.joinedId) || cmpStr(a.userId, b.userId)).map((m) => ({ ...m })),
      lastMessageId: last?.message ?? 0n,
      lastEventId: last?.event ?? 0n,
    };
  }

  async getMembers(channelId: string): Promise<readonly MemberRecord[]> {
    return (await this.getChannel(channelId))?.members ?? [];
  }

  async getMember(channelId: string, userId: string): Promise<MemberRecord | undefined> {
    const m = this.channels.get(channelId)?.members.get(userId);
    return m ? { ...m } : undefined;
  }

  async changeMembership(change: MembershipChange): Promise<"ok" | "conflict"> {
    const c = this.channels.get(change.channelId);
    if (!c || c.version !== change.expectedVersion) return "conflict";
    c.version += 1;
    const id = change.event.id;
    for (const userId of change.remove ?? []) {
      c.members.delete(userId);
      const rows = this.userRow(userId);
      const row = rows.get(change.channelId);
      if (row) rows.set(change.channelId, { channelId: change.channelId, joinedId: row.joinedId, leftId: id });
    }
    for (const m of change.add ?? []) {
      c.members.set(m.userId, { ...m });
      this.userRow(m.userId).set(change.channelId, { channelId: change.channelId, joinedId: id });
    }
    for (const r of change.roles ?? []) {
      const m = c.members.get(r.userId);
      if (m) c.members.set(r.userId, { ...m, role: r.role });
    }
    this.storeChange(change.event);
    return "ok";
  }

  async userChannels(userId: string): Promise<readonly UserChannel[]> {
    return [...(this.userRows.get(userId)?.values() ?? [])]
      .sort((a, b) => cmpStr(a.channelId, b.channelId))
      .map((r) => ({ ...r }));
  }

  async claimClientMessageId(message: MessageRecord): Promise<ClaimResult> {
    const key = clientKey(message.channelId, message.senderId, message.clientMessageId);
    const cur = this.clientIds.get(key);
    if (cur && cur.expiresAt > this.now()) {
      // The message row is authoritative once it landed (it may have been deleted since).
      const stored = this.messages.get(message.channelId)?.byId.get(cur.message.id);
      return { claimed: false, existing: { ...(stored ?? cur.message) } };
    }
    this.clientIds.set(key, { message: { ...message }, expiresAt: this.now() + CLAIM_TTL_MS, at: 0n });
    return { claimed: true };
  }

  async findClaim(channelId: string, senderId: string, clientMessageId: string): Promise<MessageRecord | undefined> {
    const cur = this.clientIds.get(clientKey(channelId, senderId, clientMessageId));
    if (!cur || cur.expiresAt <= this.now()) return undefined;
    const stored = this.messages.get(channelId)?.byId.get(cur.message.id);
    return { ...(stored ?? cur.message) };
  }

  async recordClaim(message: MessageRecord, atMicros: bigint): Promise<void> {
    const key = clientKey(message.channelId, message.senderId, message.clientMessageId);
    const cur = this.clientIds.get(key);
    if (cur && cur.expiresAt > this.now() && cur.at > atMicros) return;
    this.clientIds.set(key, { message: { ...message }, expiresAt: this.now() + CLAIM_TTL_MS, at: atMicros });
  }

  async putMessage(message: MessageRecord): Promise<void> {
    const log = this.log(this.messages, message.channelId);
    const cur = log.byId.get(message.id);
    // A retried write of a message deleted meanwhile must not bring its text back.
    if (!cur?.deleted) log.put(message.id, { ...message });
    this.bump(message.channelId, message.id, true);
  }

  async getMessage(channelId: string, id: bigint): Promise<MessageRecord | undefined> {
    const m = this.messages.get(channelId)?.byId.get(id);
    return m ? { ...m } : undefined;
  }

  async history(channelId: string, anchor: HistoryAnchor, limit: number): Promise<HistoryPage> {
    const log = this.messages.get(channelId);
    if (!log) return { messages: [], hasMore: false };
    let from: number;
    let to: number;
    let hasMore: boolean;
    if ("afterId" in anchor) {
      from = log.firstAfter(anchor.afterId);
      to = Math.min(log.ids.length, from + limit);
      hasMore = to < log.ids.length;
    } else {
      to = "beforeId" in anchor ? log.firstAfter(anchor.beforeId - 1n) : log.ids.length;
      from = Math.max(0, to - limit);
      hasMore = from > 0;
    }
    return { messages: log.ids.slice(from, to).map((id) => ({ ...log.byId.get(id)! })), hasMore };
  }

  async deleteMessage(channelId: string, id: bigint, by: string, at: Date): Promise<boolean> {
    const log = this.messages.get(channelId);
    const cur = log?.byId.get(id);
    if (!log || !cur) return false;
    if (cur.deleted) return true;
    const tombstone: MessageRecord = { ...cur, text: "", deleted: true, deletedAt: at, deletedBy: by };
    log.put(id, tombstone);
    const changes = this.changes.get(channelId);
    for (const cid of this.announces.get(`${channelId}\u0000${id}`) ?? []) {
      const c = changes?.byId.get(cid);
      if (c) changes!.byId.set(cid, { ...c, event: tombstoneAnnounce(c.event, at) });
    }
    const claim = this.clientIds.get(clientKey(cur.channelId, cur.senderId, cur.clientMessageId));
    if (claim && claim.message.id === id) claim.message = { ...claim.message, text: "" };
    return true;
  }

  async appendChange(change: ChangeRecord): Promise<void> {
    this.storeChange(change);
  }

  async eventsAfter(channelId: string, afterId: bigint, limit: number, untilId?: bigint): Promise<readonly ChannelEvent[]> {
    const out: ChannelEvent[] = [];
    const msgs = this.messages.get(channelId);
    const chs = this.changes.get(channelId);
    let i = msgs ? msgs.firstAfter(afterId) : 0;
    let j = chs ? chs.firstAfter(afterId) : 0;
    const within = (id: bigint | undefined): id is bigint => id !== undefined && (untilId === undefined || id <= untilId);
    while (out.length < limit) {
      const mid = msgs?.ids[i];
      const cid = chs?.ids[j];
      const m = within(mid);
      const c = within(cid);
      if (!m && !c) break;
      if (m && (!c || mid < cid)) {
        out.push({ kind: "message", id: mid, message: { ...msgs!.byId.get(mid)! } });
        i++;
      } else {
        out.push({ kind: "change", id: cid!, change: copyChange(chs!.byId.get(cid!)!) });
        j++;
      }
    }
    return out;
  }

  async countUnread(channelId: string, userId: string, afterId: bigint, cap: number): Promise<number> {
    const log = this.messages.get(channelId);
    if (!log) return 0;
    let n = 0;
    for (let i = log.firstAfter(afterId); i < log.ids.length && n < cap; i++) {
      const m = log.byId.get(log.ids[i]!)!;
      if (!m.deleted && m.senderId !== userId) n++;
    }
    return n;
  }

  async advanceReadMarker(userId: string, channelId: string, upToId: bigint): Promise<bigint> {
    return advance(this.readMarks, `${userId}\u0000${channelId}`, upToId);
  }

  async readMarkers(userId: string, channelIds: readonly string[]): Promise<ReadonlyMap<string, bigint>> {
    return new Map(channelIds.map((c) => [c, this.readMarks.get(`${userId}\u0000${c}`) ?? 0n]));
  }

  async advanceDeliveredMarker(userId: string, deviceId: string, channelId: string, upToId: bigint): Promise<bigint> {
    return advance(this.deliveredMarks, `${userId}\u0000${deviceId}\u0000${channelId}`, upToId);
  }

  private storeChange(change: ChangeRecord): void {
    this.log(this.changes, change.channelId).put(change.id, copyChange(change));
    const announced = change.kind === "message" ? announcedMessage(change.event) : undefined;
    if (announced) {
      const key = `${change.channelId}\u0000${announced.messageId}`;
      const ids = this.announces.get(key) ?? [];
      if (!ids.includes(change.id)) ids.push(change.id);
      this.announces.set(key, ids);
    }
    this.bump(change.channelId, change.id, false);
  }

  private bump(channelId: string, id: bigint, isMessage: boolean): void {
    const cur = this.lastIds.get(channelId) ?? { message: 0n, event: 0n };
    this.lastIds.set(channelId, {
      message: isMessage && id > cur.message ? id : cur.message,
      event: id > cur.event ? id : cur.event,
    });
  }

  private log<T>(logs: Map<string, IdLog<T>>, channelId: string): IdLog<T> {
    let l = logs.get(channelId);
    if (!l) {
      l = new IdLog<T>();
      logs.set(channelId, l);
    }
    return l;
  }

  private userRow(userId: string): Map<string, UserChannel> {
    let m = this.userRows.get(userId);
    if (!m) {
      m = new Map();
      this.userRows.set(userId, m);
    }
    return m;
  }
}

function advance(marks: Map<string, bigint>, key: string, upToId: bigint): bigint {
  const cur = marks.get(key) ?? 0n;
  if (upToId <= cur) return cur;
  marks.set(key, upToId);
  return upToId;
}

/** Events are mutable protobuf messages (callers set the per-reader cursor): never share them. */
function copyChange(c: ChangeRecord): ChangeRecord {
  return { ...c, event: fromBinary(ChatEventSchema, toBinary(ChatEventSchema, c.event)) };
}

function clientKey(channelId: string, senderId: string, clientMessageId: string): string {
  return `${channelId}\u0000${senderId}\u0000${clientMessageId}`;
}

const cmp = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);
const cmpStr = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
