/**
 * Records -> protobuf (chat.proto). Pure builders shared by the use cases (stored and live
 * ChatEvents) and module.ts (responses).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ChannelSchema,
  ChannelType as PbChannelType,
  ChatEventSchema,
  MemberChangeKind,
  MemberRole,
  MessageSchema,
  ReceiptKind,
  type Channel as PbChannel,
  type ChatEvent,
  type Message as PbMessage,
} from "../../../gen/switchboard/chat/v1/chat_pb.js";
import type { ChannelType, MemberRecord, MessageRecord, Role } from "../ports.js";

export interface ChannelView {
  readonly id: string;
  readonly type: ChannelType;
  readonly name: string;
  readonly createdAt: Date;
  readonly members: readonly MemberRecord[];
  readonly lastMessageId: bigint;
}

const ROLE: Readonly<Record<Role, MemberRole>> = { owner: MemberRole.OWNER, admin: MemberRole.ADMIN, member: MemberRole.MEMBER };

export function toPbChannel(c: ChannelView, readUpToId = 0n): PbChannel {
  return create(ChannelSchema, {
    channelId: c.id,
    type: c.type === "direct" ? PbChannelType.DIRECT : PbChannelType.GROUP,
    name: c.name,
    members: c.members.map((m) => ({ userId: m.userId, role: ROLE[m.role], joinTime: timestampFromDate(m.joinedAt) })),
    createTime: timestampFromDate(c.createdAt),
    lastMessageId: c.lastMessageId,
    readUpToId,
  });
}

export function toPbMessage(m: MessageRecord): PbMessage {
  return create(MessageSchema, {
    messageId: m.id,
    channelId: m.channelId,
    senderId: m.senderId,
    clientMessageId: m.clientMessageId,
    text: m.deleted ? "" : m.text,
    createTime: timestampFromDate(m.createdAt),
    deleted: m.deleted,
    ...(m.deletedAt ? { deleteTime: timestampFromDate(m.deletedAt) } : {}),
  });
}

export function messageEvent(m: MessageRecord, eventId: bigint, at: Date, cursor = ""): ChatEvent {
  return create(ChatEventSchema, { cursor, eventId, time: timestampFromDate(at), event: { case: "message", value: toPbMessage(m) } });
}

export type MemberChangeKindName = "created" | "added" | "removed" | "left" | "roleChanged";
const KIND: Readonly<Record<MemberChangeKindName, MemberChangeKind>> = {
  created: MemberChangeKind.CREATED,
  added: MemberChangeKind.ADDED,
  removed: MemberChangeKind.REMOVED,
  left: MemberChangeKind.LEFT,
  roleChanged: MemberChangeKind.ROLE_CHANGED,
};

export function memberChangeEvent(
  id: bigint,
  at: Date,
  kind: MemberChangeKindName,
  userIds: readonly string[],
  actorId: string,
  after: ChannelView,
): ChatEvent {
  return create(ChatEventSchema, {
    eventId: id,
    time: timestampFromDate(at),
    event: { case: "memberChange", value: { channelId: after.id, kind: KIND[kind], userIds: [...userIds], actorId, channel: toPbChannel(after) } },
  });
}

export function readReceiptEvent(id: bigint, at: Date, channelId: string, userId: string, upToId: bigint): ChatEvent {
  return create(ChatEventSchema, {
    eventId: id,
    time: timestampFromDate(at),
    event: { case: "receipt", value: { channelId, userId, kind: ReceiptKind.READ, upToId } },
  });
}

/** Ephemeral (event_id 0, no cursor): delivered receipts are never stored. */
export function deliveredReceiptEvent(at: Date, channelId: string, userId: string, deviceId: string, upToId: bigint): ChatEvent {
  return create(ChatEventSchema, {
    time: timestampFromDate(at),
    event: { case: "receipt", value: { channelId, userId, kind: ReceiptKind.DELIVERED, upToId, deviceId } },
  });
}

export function deletedEvent(id: bigint, at: Date, channelId: string, messageId: bigint, by: string): ChatEvent {
  return create(ChatEventSchema, {
    eventId: id,
    time: timestampFromDate(at),
    event: { case: "deleted", value: { channelId, messageId, deletedBy: by, deleteTime: timestampFromDate(at) } },
  });
}

export function typingEvent(at: Date, channelId: string, userId: string, active: boolean): ChatEvent {
  return create(ChatEventSchema, { time: timestampFromDate(at), event: { case: "typing", value: { channelId, userId, active } } });
}

/** A copy carrying a reader's cursor (stored events have none: cursors are per reader). */
export function withCursor(e: ChatEvent, cursor: string): ChatEvent {
  return create(ChatEventSchema, { ...e, cursor });
}
