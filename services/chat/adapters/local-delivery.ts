/**
 * Delivery to the device streams held by this process. Routing between chat servers
 * (cluster/routed-delivery.ts) wraps it: events from peers end up here too.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import type { Delivery, LiveStream } from "../ports.js";

export interface LocalDeliveryOptions {
  readonly registry?: Registry;
}

export class LocalDelivery implements Delivery {
  /** user -> device -> stream */
  private readonly byUser = new Map<string, Map<string, LiveStream>>();
  private count = 0;
  private readonly delivered: Counter | undefined;

  constructor(opts: LocalDeliveryOptions = {}) {
    if (opts.registry) {
      const self = this;
      new Gauge({
        name: "chat_live_streams",
        help: "Live device streams (Subscribe and Session) held by this chat server",
        registers: [opts.registry],
        collect() {
          this.set(self.count);
        },
      });
      new Gauge({
        name: "chat_live_outbox_events",
        help: "Events waiting in the outboxes of this chat server's live streams (each bounded by SWITCHBOARD_CHAT_OUTBOX_EVENTS)",
        registers: [opts.registry],
        collect() {
          let n = 0;
          for (const devices of self.byUser.values()) for (const s of devices.values()) n += s.queued ?? 0;
          this.set(n);
        },
      });
      new Gauge({
        name: "chat_live_outbox_events_max",
        help: "Events waiting in the fullest outbox of this chat server's live streams",
        registers: [opts.registry],
        collect() {
          let n = 0;
          for (const devices of self.byUser.values()) for (const s of devices.values()) n = Math.max(n, s.queued ?? 0);
          this.set(n);
        },
      });
      this.delivered = new Counter({
        name: "chat_live_events_total",
        help: "Events handed to live device streams of this chat server",
        registers: [opts.registry],
      });
    }
  }

  attach(stream: LiveStream): LiveStream | undefined {
    let devices = this.byUser.get(stream.userId);
    if (!devices) {
      devices = new Map();
      this.byUser.set(stream.userId, devices);
    }
    const previous = devices.get(stream.deviceId);
    devices.set(stream.deviceId, stream);
    if (!previous) this.count += 1;
    return previous;
  }

  detach(stream: LiveStream): void {
    const devices = this.byUser.get(stream.userId);
    if (devices?.get(stream.deviceId) !== stream) return;
    devices.delete(stream.deviceId);
    this.count -= 1;
    if (devices.size === 0) this.byUser.delete(stream.userId);
  }

  deliver(userIds: readonly string[], event: ChatEvent, except?: { readonly userId: string; readonly deviceId: string }): void {
    let n = 0;
    for (const userId of new Set(userIds)) {
      const devices = this.byUser.get(userId);
      if (!devices) continue;
      for (const stream of devices.values()) {
        if (except && stream.userId === except.userId && stream.deviceId === except.deviceId) continue;
        stream.push(event);
        n += 1;
      }
    }
    this.delivered?.inc(n);
  }

  size(): number {
    return this.count;
  }

  /** Every attached stream (a snapshot). */
  streams(): LiveStream[] {
    const out: LiveStream[] = [];
    for (const devices of this.byUser.values()) out.push(...devices.values());
    return out;
  }
}
