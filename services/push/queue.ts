/**
 * The push work queue: a JetStream stream of switchboard.events.v1.PushRequest, one per mesh
 * (keyspace), shared by every push worker through one durable (a work queue: each request goes
 * to one worker, redelivered until acked). SendNotification publishes with the notification id
 * as Nats-Msg-Id, so a retried enqueue inside the stream's duplicate window is stored once.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { PushRequestSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import type { Notification } from "./ports.js";

/** Keyspaces are [a-z0-9_]; kept as one NATS token and a valid stream name. */
const token = (keyspace: string): string => keyspace.replace(/[^A-Za-z0-9_-]/g, "_") || "_";

export const pushStream = (keyspace: string): string => `PUSH_${token(keyspace)}`;
export const pushSubject = (keyspace: string): string => `switchboard.push.requests.${token(keyspace)}`;
export const PUSH_DURABLE = "push-workers";
/** Requests live at most this long in the stream (the longest expiry SendNotification accepts). */
export const PUSH_STREAM_OPTIONS = { maxAgeMs: 7 * 86_400_000, duplicateWindowMs: 10 * 60_000 } as const;

export function encodePushRequest(n: Notification): Uint8Array {
  return toBinary(
    PushRequestSchema,
    create(PushRequestSchema, {
      notificationId: n.id,
      userId: n.userId,
      title: n.title,
      body: n.body,
      data: { ...n.data },
      collapseKey: n.collapseKey,
      expireTime: timestampFromMs(n.expireAtMs),
      createTime: timestampFromMs(n.createdAtMs),
    }),
  );
}

/** Throws on bytes that are not a PushRequest (the worker drops such a message). */
export function decodePushRequest(bytes: Uint8Array): Notification {
  const r = fromBinary(PushRequestSchema, bytes);
  return {
    id: r.notificationId,
    userId: r.userId,
    title: r.title,
    body: r.body,
    data: { ...r.data },
    collapseKey: r.collapseKey,
    expireAtMs: r.expireTime ? timestampMs(r.expireTime) : 0,
    createdAtMs: r.createTime ? timestampMs(r.createTime) : 0,
  };
}
