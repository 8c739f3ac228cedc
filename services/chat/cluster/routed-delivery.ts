/**
 * Delivery across chat servers. A user's devices may sit on different servers, and the server
 * that handles a send does not know which. Each event goes to this server's own streams, and
 * once to every other registered chat server on its subject `switchboard.chat.deliver.<id>`
 * (core NATS) with the recipients; each server hands it to the streams it holds of those users.
 *
 * Why per-server subjects and not one subject per user: a group message is one NATS message per
 * peer server instead of one per member, user ids never become subject tokens, and no directory
 * of who is connected where has to be kept right. Each server reads every event addressed to
 * the cluster's users, which is cheap at tens of servers; a user -> server directory can narrow
 * the targets later without changing the subjects.
 *
 * Core NATS is at most once: an event lost here (NATS down, a server that just joined and is
 * not in our registry snapshot yet) is already stored, and the client's Sync from its cursor
 * returns it. Sends never fail because of routing.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { ChatDeliverySchema } from "../../../gen/switchboard/events/v1/events_pb.js";
import type { EventBus, Unsubscribe } from "../../../platform/ports/event-bus.js";
import type { Delivery, LiveStream } from "../ports.js";
import type { ChatServerInfo } from "./registry.js";

export const chatDeliverSubject = (serverId: string): string => `switchboard.chat.deliver.${serverId}`;

export interface RoutedDeliveryOptions {
  /** This server's streams. */
  readonly local: Delivery;
  readonly bus: EventBus;
  /** This server's registry id (its subject token). */
  readonly serverId: string;
  readonly log: Logger;
  readonly registry?: Registry;
  /** Told of each event routed in from another server, before it is delivered here. */
  readonly onRouted?: (event: ChatEvent) => void;
}

export class RoutedDelivery implements Delivery {
  private peers: readonly string[] = [];
  private unsubscribe: Unsubscribe | undefined;
  private readonly routed: Counter<"direction"> | undefined;
  private readonly dropped: Counter | undefined;
  private failures = 0;

  constructor(private readonly opts: RoutedDeliveryOptions) {
    if (opts.registry) {
      this.routed = new Counter({
        name: "chat_routed_events_total",
        help: "Live events routed between chat servers over NATS (out: published to a peer server; in: received from one)",
        labelNames: ["direction"] as const,
        registers: [opts.registry],
      });
      this.dropped = new Counter({
        name: "chat_routed_publish_failures_total",
        help: "Live events that could not be published to a peer chat server (NATS unreachable); clients get them by Sync",
        registers: [opts.registry],
      });
    }
  }

  /** Starts receiving events routed to this server (before it registers, so none addressed to it is missed). */
  start(): void {
    this.unsubscribe ??= this.opts.bus.subscribe(chatDeliverSubject(this.opts.serverId), (msg) => this.receive(msg.data));
  }

  /** The registry's current servers; events are routed to every one but this. */
  setServers(servers: readonly ChatServerInfo[]): void {
    this.peers = servers.map((s) => s.id).filter((id) => id !== this.opts.serverId);
  }

  get peerCount(): number {
    return this.peers.length;
  }

  attach(stream: LiveStream): LiveStream | undefined {
    return this.opts.local.attach(stream);
  }

  detach(stream: LiveStream): void {
    this.opts.local.detach(stream);
  }

  size(): number {
    return this.opts.local.size();
  }

  deliver(userIds: readonly string[], event: ChatEvent, except?: { readonly userId: string; readonly deviceId: string }): void {
    this.opts.local.deliver(userIds, event, except);
    if (this.peers.length === 0 || userIds.length === 0) return;
    const recipientUserIds = [...new Set(userIds)];
    for (const target of this.peers) {
      const data = toBinary(
        ChatDeliverySchema,
        create(ChatDeliverySchema, {
          event,
          recipientUserIds,
          targetServerId: target,
          originServerId: this.opts.serverId,
          originUserId: except?.userId ?? "",
          originDeviceId: except?.deviceId ?? "",
        }),
      );
      try {
        this.opts.bus.publish(chatDeliverSubject(target), data);
        this.routed?.inc({ direction: "out" });
      } catch (err) {
        this.dropped?.inc();
        if (this.failures++ % 1000 === 0) this.opts.log.warn({ err, target }, "routing a live event to a peer chat server failed; clients recover it by Sync");
      }
    }
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private receive(data: Uint8Array): void {
    let d;
    try {
      d = fromBinary(ChatDeliverySchema, data);
    } catch (err) {
      this.opts.log.warn({ err }, "malformed routed chat event dropped");
      return;
    }
    if (d.targetServerId !== this.opts.serverId || !d.event) return;
    this.routed?.inc({ direction: "in" });
    this.opts.onRouted?.(d.event);
    const except = d.originDeviceId !== "" ? { userId: d.originUserId, deviceId: d.originDeviceId } : undefined;
    this.opts.local.deliver(d.recipientUserIds, d.event, except);
  }
}
