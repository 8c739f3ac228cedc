/**
 * ChatService over gRPC (public through the gateway): protobuf <-> Chat use cases, plus the two
 * live streams. The caller is always requireCaller(ctx); device ids only scope delivery.
 *
 * Subscribe: one DeviceStream per (user, device) attached to the Delivery port (a newer stream
 *   ends the older one with ABORTED), its events written as they come; detached when the call ends.
 * Session: the same stream for output, with the client's frames read concurrently; send_acks are
 *   merged into the output between events. A failed send is reported in its send_ack, and the
 *   session stays open; a malformed frame ends it (INVALID_ARGUMENT).
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Counter } from "prom-client";
import {
  AddMembersResponseSchema,
  ChatService,
  CreateDirectChannelResponseSchema,
  CreateGroupChannelResponseSchema,
  DeleteMessageResponseSchema,
  GetChannelResponseSchema,
  GetHistoryResponseSchema,
  LeaveChannelResponseSchema,
  ListMyChannelsResponseSchema,
  MarkDeliveredResponseSchema,
  MarkReadResponseSchema,
  RemoveMemberResponseSchema,
  SendMessageResponseSchema,
  SendTypingResponseSchema,
  SessionResponseSchema,
  SyncResponseSchema,
  type ChatEvent,
  type SendMessageRequest,
  type SessionRequest,
  type SessionResponse,
} from "../../gen/switchboard/chat/v1/chat_pb.js";
import { DomainError, invalidArgument, isDomainError } from "../../platform/errors.js";
import { codeForKind } from "../../platform/grpc/status.js";
import { Serialized } from "../../platform/grpc/service-definition.js";
import { requireCaller } from "../../platform/identity.js";
import type { ServiceModule } from "../module.js";
import { LocalDelivery } from "./adapters/local-delivery.js";
import { ChatServerRegistration, chatServersPath, newChatServerId, watchChatServers } from "./cluster/registry.js";
import { RoutedDelivery } from "./cluster/routed-delivery.js";
import { relayPresenceToStreams } from "./presence-events.js";
import { PresenceReporter, withPresenceReports } from "./presence-reporter.js";
import { LockedClaims } from "./adapters/locked-claims.js";
import { OfflinePush } from "./offline-push.js";
import { tokenRangeIdMinter } from "./adapters/token-range-minter.js";
import { Chat, KEPT_MEMBER_RECORDS } from "./chat.js";
import { forgetOnMemberChange, MemberLists } from "./member-lists.js";
import { toPbChannel, toPbMessage } from "./domain/events.js";
import { validateDeviceId } from "./domain/validate.js";
import { DeviceStream, keepAliveEvent, replacedStream } from "./live/device-stream.js";
import { RelayCall, subscribeAssertionVerifier } from "./live/relay.js";
import { encodeSessionEvents } from "./live/encoded-events.js";
import { meshKeyOf } from "../../platform/mesh-secret.js";
import type { Delivery, HistoryAnchor } from "./ports.js";
import { createChatStore } from "./store.js";
import { atRandomMoments } from "../../platform/spread.js";

/** Devices of one user that can hold a live stream (Subscribe or Session) at the same time. */
export const MAX_STREAMS_PER_USER = 32;

export const chatModule: ServiceModule = {
  name: "chat",
  desc: ChatService,
  public: true,
  internalMethods: ["Relay"],
  // Messages, channels and markers live in Cassandra. Without token-range no new id can be
  // minted once the worker-id lease runs out (sends answer UNAVAILABLE), but reads, Sync,
  // receipts and live streams go on, so it is not a reason to be NOT_SERVING.
  needs: ["cassandra"],
  async create({ config, log, engine, upstreamAddress, registry }) {
    const store = await createChatStore(engine, log, { retentionDays: config.chat.retentionDays, writeTimeoutMs: config.chat.writeTimeoutMs });
    const serverId = newChatServerId();
    const ids = await tokenRangeIdMinter({ target: upstreamAddress("tokenrange"), instanceId: `chat@${serverId}`, log });
    const local = new LocalDelivery(registry ? { registry } : {});
    // Events for this server's streams from the other chat servers; subscribed before this
    // server registers, so nothing addressed to it after it appears in the registry is missed.
    // Member lists kept for sends; a membership change made on another server forgets its list
    // here when its event is routed in (the list's expiry bounds a lost one).
    const memberLists = new MemberLists({ ttlMs: config.chat.memberListMs, maxMembers: KEPT_MEMBER_RECORDS });
    const delivery = new RoutedDelivery({
      local,
      bus: engine.bus,
      serverId,
      log,
      ...(registry ? { registry } : {}),
      onRouted: forgetOnMemberChange(memberLists),
    });
    delivery.start();
    const registryPath = chatServersPath(config.cassandra.keyspace);
    const unwatch = watchChatServers(engine.coordinator, registryPath, (servers) => delivery.setServers(servers));
    // An open stream is presence: its device is reported to the presence service in batches.
    const presenceLog = log.child({ component: "presence-reporter" });
    const reporter = new PresenceReporter({
      target: upstreamAddress("presence"),
      intervalMs: config.presence.heartbeatIntervalMs,
      onError: (what, err) => presenceLog.debug({ err, what }, "presence report failed; the next one sends the live set again"),
    });
    const reported = withPresenceReports(delivery, reporter);
    // Presence transitions reach this server's own streams of the contacts (every server gets every change).
    const unrelay = relayPresenceToStreams(engine.bus, local, (what, err) => presenceLog.warn({ err, what }, "presence event dropped"));
    // Members offline on every device get a push (asked of presence and push, off the send path).
    const offlinePush = new OfflinePush({
      presenceTarget: upstreamAddress("presence"),
      pushTarget: upstreamAddress("push"),
      channelOf: (id) => store.getChannel(id),
      onError: (what, err) => log.warn({ err: err instanceof Error ? err.message : String(err), what }, "offline push"),
      ...(registry ? { registry } : {}),
    });
    // Sends of one client message id are serialized by a short lock in the cache, not an LWT per send.
    let cacheDownLoggedAt = 0;
    const claims = new LockedClaims(store, engine.cache, {
      keyspace: config.cassandra.keyspace,
      // Every send while the cache is down takes this path: logged at most every 10 s.
      onCacheDown: (err) => {
        if (Date.now() - cacheDownLoggedAt < 10_000) return;
        cacheDownLoggedAt = Date.now();
        log.warn({ err: err instanceof Error ? err.message : String(err) }, "send lock unavailable; claiming through the database");
      },
    });
    const chat = new Chat({ store, ids, delivery: reported, config: config.chat, notifier: offlinePush, claims, memberLists });
    const lifecycle = new StreamLifecycle();
    const resumes = registry
      ? new Counter({ name: "chat_resumes_total", help: "Sync calls from a saved cursor (devices catching up after a reconnect or a start)", registers: [registry] })
      : undefined;
    let registration: ChatServerRegistration | undefined;
    const relayLog = log.child({ component: "relay" });
    return {
      impl: chatImpl(chat, reported, {
        serverId,
        lifecycle,
        ...(resumes ? { onResume: () => resumes.inc() } : {}),
        relay: { log: relayLog, verify: subscribeAssertionVerifier(meshKeyOf(config), relayLog) },
      }),
      listening(address) {
        registration = new ChatServerRegistration({ coordinator: engine.coordinator, path: registryPath, id: serverId, address, streams: () => local.size(), log });
      },
      async drain() {
        // No new streams here (gateways see the flag and place elsewhere), then the held ones end
        // spread over the window, each told to reconnect: clients resume on another server.
        lifecycle.draining = true;
        await registration?.drain();
        await atRandomMoments(local.streams(), config.chat.drainWindowMs, (s, retryAfterMs) => {
          if (s instanceof DeviceStream) s.end(serverDraining(retryAfterMs));
        });
      },
      close: async () => {
        unwatch();
        unrelay();
        await reporter.close();
        await offlinePush.close();
        await registration?.close();
        delivery.close();
        await ids.close?.();
        await store.close?.();
      },
    };
  },
};

export interface ChatImplOptions {
  /** Named in Session's opened frame (diagnostics). */
  readonly serverId: string;
  /** Set while the server drains: new live streams are refused with a reconnect hint. */
  readonly lifecycle?: StreamLifecycle;
  /** Called for each Sync from a saved cursor (a device catching up: after a reconnect, or a new start). */
  readonly onResume?: () => void;
  /** Serves Relay (gateways' multiplexed Subscribe streams) when given. */
  readonly relay?: { readonly verify: (assertion: string) => string | undefined; readonly log?: Logger };
}

export class StreamLifecycle {
  draining = false;
}

/** The error a live stream ends with when its server shuts down: reconnect (through the gateway) and Sync. */
export function serverDraining(retryAfterMs = 0): DomainError {
  return new DomainError(
    "Unavailable",
    "chat server is shutting down: reconnect (you will be placed on another server) and Sync from your cursor",
    { retryAfterMs },
  );
}


/**
 * Relay: the gateway's requests are read beside the responses; the call ends when the gateway
 * leaves or half-closes, and every stream on it is detached then.
 */
function relayHandler(
  relay: NonNullable<ChatImplOptions["relay"]>,
  attach: (userId: string, deviceId: string) => { stream: DeviceStream; close: () => void },
): NonNullable<ServiceImpl<typeof ChatService>["relay"]> {
  return async function* (requests, ctx) {
    const call = new RelayCall({ verify: relay.verify, attach, ...(relay.log ? { log: relay.log } : {}) });
    const leave = (): void => call.finish();
    ctx.signal.addEventListener("abort", leave, { once: true });
    void (async () => {
      for await (const req of requests) call.handle(req);
    })().then(leave, (e: unknown) => call.finish(e));
    try {
      yield* call.responses();
    } finally {
      ctx.signal.removeEventListener("abort", leave);
      call.finish();
    }
  };
}

/** The handlers; exported for tests that build a Chat on their own ports. */
export function chatImpl(chat: Chat, delivery: Delivery, opts: ChatImplOptions): Partial<ServiceImpl<typeof ChatService>> {
  const cfg = chat.config;
  const user = (ctx: HandlerContext) => requireCaller(ctx).userId;
  // Live devices per user, so one account cannot hold unbounded streams (memory stays bounded).
  const devicesOf = new Map<string, Set<string>>();
  const owner = new Map<string, DeviceStream>();

  /**
   * Attaches a device stream now: events from this moment on are kept for it. Eager on purpose:
   * Session's `opened` frame promises delivery from then on, before its output is read further.
   * `close` detaches it and ends it (its events() generator then finishes).
   */
  function live(userId: string, deviceId: string): { stream: DeviceStream; close: () => void } {
    if (opts.lifecycle?.draining) throw serverDraining();
    const mine = devicesOf.get(userId) ?? new Set<string>();
    if (!mine.has(deviceId) && mine.size >= MAX_STREAMS_PER_USER) {
      throw new DomainError(
        "ResourceExhausted",
        `too many live streams: at most ${MAX_STREAMS_PER_USER} devices of one user can be subscribed at once`,
      );
    }
    const stream = new DeviceStream({ userId, deviceId, outboxEvents: cfg.outboxEvents, keepAliveMs: cfg.keepAliveMs });
    const previous = delivery.attach(stream);
    if (previous instanceof DeviceStream) previous.end(replacedStream());
    mine.add(deviceId);
    devicesOf.set(userId, mine);
    owner.set(`${userId}\u0000${deviceId}`, stream);
    return {
      stream,
      close: () => {
        delivery.detach(stream);
        stream.end();
        // A replaced stream must not forget the device its successor now holds.
        const key = `${userId}\u0000${deviceId}`;
        if (owner.get(key) !== stream) return;
        owner.delete(key);
        mine.delete(deviceId);
        if (mine.size === 0) devicesOf.delete(userId);
      },
    };
  }

  const send = async (userId: string, req: SendMessageRequest) => {
    const r = await chat.send(userId, req.channelId, req.clientMessageId, req.text);
    return create(SendMessageResponseSchema, { message: toPbMessage(r.message), duplicate: r.duplicate });
  };

  return {
    async createDirectChannel(req, ctx) {
      const r = await chat.createDirect(user(ctx), req.peerUserId);
      return create(CreateDirectChannelResponseSchema, { channel: toPbChannel(r.channel), created: r.created });
    },
    async createGroupChannel(req, ctx) {
      const channel = await chat.createGroup(user(ctx), req.name, req.memberUserIds, req.requestId);
      return create(CreateGroupChannelResponseSchema, { channel: toPbChannel(channel) });
    },
    async getChannel(req, ctx) {
      const r = await chat.getChannel(user(ctx), req.channelId);
      return create(GetChannelResponseSchema, { channel: toPbChannel(r.channel, r.readUpToId) });
    },
    async addMembers(req, ctx) {
      const r = await chat.addMembers(user(ctx), req.channelId, req.userIds);
      return create(AddMembersResponseSchema, { channel: toPbChannel(r.channel), addedUserIds: r.added });
    },
    async removeMember(req, ctx) {
      await chat.removeMember(user(ctx), req.channelId, req.userId);
      return create(RemoveMemberResponseSchema, {});
    },
    async leaveChannel(req, ctx) {
      await chat.leave(user(ctx), req.channelId);
      return create(LeaveChannelResponseSchema, {});
    },
    async listMyChannels(req, ctx) {
      const r = await chat.listMine(user(ctx), req.pageSize, req.pageToken);
      return create(ListMyChannelsResponseSchema, {
        channels: r.channels.map((c) => ({ ...toPbChannel(c.channel, c.readUpToId), unreadCount: c.unreadCount })),
        nextPageToken: r.nextPageToken,
      });
    },
    sendMessage: (req, ctx) => send(user(ctx), req),
    async getHistory(req, ctx) {
      const anchor: HistoryAnchor =
        req.anchor.case === "beforeId" ? { beforeId: req.anchor.value } : req.anchor.case === "afterId" ? { afterId: req.anchor.value } : { newest: true };
      const r = await chat.history(user(ctx), req.channelId, anchor, req.pageSize);
      return create(GetHistoryResponseSchema, { messages: r.messages.map(toPbMessage), hasMore: r.hasMore });
    },
    async sync(req, ctx) {
      if (req.cursor !== "") opts.onResume?.();
      const r = await chat.sync(user(ctx), req.deviceId, req.cursor, req.pageSize);
      return create(SyncResponseSchema, { events: [...r.events], nextCursor: r.nextCursor, hasMore: r.hasMore, reset: r.reset });
    },
    async markRead(req, ctx) {
      return create(MarkReadResponseSchema, { readUpToId: await chat.markRead(user(ctx), req.channelId, req.upToId) });
    },
    async markDelivered(req, ctx) {
      return create(MarkDeliveredResponseSchema, { deliveredUpToId: await chat.markDelivered(user(ctx), req.deviceId, req.channelId, req.upToId) });
    },
    async deleteMessage(req, ctx) {
      await chat.deleteMessage(user(ctx), req.channelId, req.messageId);
      return create(DeleteMessageResponseSchema, {});
    },
    async sendTyping(req, ctx) {
      await chat.sendTyping(user(ctx), req.channelId, req.active);
      return create(SendTypingResponseSchema, {});
    },
    async *subscribe(req, ctx) {
      const userId = user(ctx);
      validateDeviceId(req.deviceId);
      const device = live(userId, req.deviceId);
      try {
        // Attached: everything from now on reaches this stream. Saying so at once lets the client
        // Sync without a gap between what Sync read and what the stream carries.
        yield { events: [keepAliveEvent()] };
        for await (const events of device.stream.batches(ctx.signal)) yield { events };
      } finally {
        device.close();
      }
    },
    ...(opts.relay ? { relay: relayHandler(opts.relay, live) } : {}),
    async *session(requests, ctx) {
      const userId = user(ctx);
      const input = requests[Symbol.asyncIterator]();
      const first = await input.next();
      if (first.done || first.value.frame.case !== "open") throw invalidArgument("open", "the first Session frame must be `open` (with device_id)");
      const deviceId = validateDeviceId(first.value.frame.value.deviceId, "open.device_id");
      const device = live(userId, deviceId);
      try {
        yield create(SessionResponseSchema, {
          frame: { case: "opened", value: { serverId: opts.serverId, keepAliveInterval: durationFromMs(cfg.keepAliveMs) } },
        });
        // Session runs on grpc-js only (bidi has no in-process hop), whose serializer writes a
        // Serialized frame's bytes as they are: typed as responses for the ServiceImpl.
        yield* sessionFrames(userId, deviceId, input, device.stream.batches(ctx.signal)) as AsyncGenerator<SessionResponse>;
      } finally {
        device.close();
      }
    },
  };

  /**
   * Output of an open session: live events and send_acks in one stream. The client's frames are
   * started in order, up to `sessionInFlight` at once: a native client pipelines its sends, and one
   * slow database write must not hold back the sends behind it. A send takes its id as it starts,
   * so one session's messages are ordered as its frames were; acks come as sends finish.
   */
  async function* sessionFrames(
    userId: string,
    deviceId: string,
    input: AsyncIterator<SessionRequest>,
    batches: AsyncGenerator<ChatEvent[]>,
  ): AsyncGenerator<SessionFrame> {
    const out = new FrameQueue();
    let stopped = false;
    const pumpEvents = (async () => {
      try {
        for await (const events of batches) {
          out.push(new Serialized(encodeSessionEvents(events)));
          // Take the next event only once the transport took this one: the stream's bounded outbox
          // stays the only buffer, so a client that stops reading is still cut off as a slow consumer.
          await out.room(1);
        }
        out.close();
      } catch (e) {
        out.close(e);
      }
    })();
    const pumpInput = (async () => {
      const inFlight = new Set<Promise<void>>();
      const start = (req: SessionRequest): void => {
        const handled: Promise<void> = handleFrame(userId, deviceId, req).then(
          (ack) => {
            if (ack) out.push(ack);
          },
          (e: unknown) => {
            stopped = true;
            out.close(e);
          },
        );
        inFlight.add(handled);
        void handled.finally(() => inFlight.delete(handled));
      };
      try {
        for (;;) {
          while (inFlight.size >= cfg.sessionInFlight) await Promise.race(inFlight);
          // Acks the client has not read yet count against the same bound: a client that sends
          // without reading stops being read (HTTP/2 flow control pushes back on it).
          await out.room(cfg.sessionInFlight);
          if (stopped) break;
          const r = await input.next();
          if (r.done || stopped) break;
          start(r.value);
        }
        // The client closed its side: once its last frames are answered the session is done.
        await Promise.all(inFlight);
        out.close();
      } catch (e) {
        out.close(e);
      }
    })();
    try {
      yield* out.drain();
    } finally {
      stopped = true;
      // Frees pumps waiting for room that nobody will drain any more; the caller then ends the
      // device stream, which ends the event pump.
      out.close();
      void pumpEvents;
      // pumpInput ends with the call's request stream; its frames' effects are harmless after this.
      void pumpInput;
    }
  }

  async function handleFrame(userId: string, deviceId: string, req: SessionRequest): Promise<SessionResponse | undefined> {
    const f = req.frame;
    switch (f.case) {
      case "open":
        throw invalidArgument("open", "may only be the first Session frame");
      case "send":
        try {
          const sent = await send(userId, f.value);
          return create(SessionResponseSchema, { frame: { case: "sendAck", value: { clientMessageId: f.value.clientMessageId, result: { case: "sent", value: sent } } } });
        } catch (e) {
          const err = isDomainError(e) && e.kind !== "Internal" ? e : new DomainError("Unavailable", "the message was not stored; retry");
          return create(SessionResponseSchema, {
            frame: { case: "sendAck", value: { clientMessageId: f.value.clientMessageId, result: { case: "error", value: { code: codeForKind(err.kind), message: err.message } } } },
          });
        }
      case "ack":
        await chat.markDelivered(userId, f.value.deviceId || deviceId, f.value.channelId, f.value.upToId);
        return undefined;
      case "typing":
        try {
          await chat.sendTyping(userId, f.value.channelId, f.value.active);
        } catch (e) {
          // Typing is best effort: a flood is dropped, not a reason to end the session.
          if (!(isDomainError(e) && e.kind === "ResourceExhausted")) throw e;
        }
        return undefined;
      case "read":
        await chat.markRead(userId, f.value.channelId, f.value.upToId);
        return undefined;
      default:
        throw invalidArgument("frame", "is empty (one of open, send, ack, typing, read)");
    }
  }
}

/**
 * A Session output frame: a response, or an `events` frame already serialized (the same event goes
 * to every member's Session: serialized once, live/encoded-events.ts; grpc-js writes the bytes).
 */
export type SessionFrame = SessionResponse | Serialized;

/** A single-consumer queue of output frames that can end with an error. */
class FrameQueue {
  private readonly items: SessionFrame[] = [];
  private ended: { error: unknown } | undefined;
  private wake: (() => void) | undefined;
  private roomWaiters: { readonly limit: number; readonly resolve: () => void }[] = [];

  /** Resolves once at most `limit` frames are waiting (or the queue ended). */
  room(limit: number): Promise<void> {
    if (this.items.length <= limit || this.ended) return Promise.resolve();
    return new Promise<void>((resolve) => this.roomWaiters.push({ limit, resolve }));
  }

  push(f: SessionFrame): void {
    if (this.ended) return;
    this.items.push(f);
    this.wake?.();
  }

  close(error?: unknown): void {
    if (this.ended) return;
    this.ended = { error };
    this.wake?.();
    this.freeRoom();
  }

  private freeRoom(): void {
    if (this.roomWaiters.length === 0) return;
    const waiting = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiting) {
      if (this.ended || this.items.length <= w.limit) w.resolve();
      else this.roomWaiters.push(w);
    }
  }

  async *drain(): AsyncGenerator<SessionFrame> {
    for (;;) {
      const f = this.items.shift();
      if (f) {
        this.freeRoom();
        yield f;
        continue;
      }
      if (this.ended) {
        if (this.ended.error !== undefined) throw this.ended.error;
        return;
      }
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }
}
