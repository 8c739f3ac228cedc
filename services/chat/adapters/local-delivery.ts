/**
 * Delivery to the device streams held by this process. One chat server is enough for now;
 * routing between chat servers goes beside this adapter (it keeps serving the local streams).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import type { Delivery, LiveStream } from "../ports.js";

export interface LocalDeliveryOptions {
  readonly registry?: Registry;
}

export class LocalDelivery implements Delivery {
  /** user -> device -> stream */
  private readonly streams = new Map<string, Map<string, LiveStream>>();
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
      this.delivered = new Counter({
        name: "chat_live_events_total",
        help: "Events handed to live device streams of this chat server",
        registers: [opts.registry],
      });
    }
  }

  attach(stream: LiveStream): LiveStream | undefined {
    let devices = this.streams.get(stream.userId);
    if (!devices) {
      devices = new Map();
      this.streams.set(stream.userId, devices);
    }
    const previous = devices.get(stream.deviceId);
    devices.set(stream.deviceId, stream);
    if (!previous) this.count += 1;
    return previous;
  }

  detach(stream: LiveStream): void {
    const devices = this.streams.get(stream.userId);
    if (devices?.get(stream.deviceId) !== stream) return;
    devices.delete(stream.deviceId);
    this.count -= 1;
    if (devices.size === 0) this.streams.delete(stream.userId);
  }

  deliver(userIds: readonly string[], event: ChatEvent, except?: { readonly userId: string; readonly deviceId: string }): void {
    let n = 0;
    for (const userId of new Set(userIds)) {
      const devices = this.streams.get(userId);
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
}
