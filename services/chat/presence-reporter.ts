/**
 * Presence for chat streams (issue 13): an open Subscribe or Session stream counts as presence,
 * so a subscribed client sends nothing extra. The chat server reports the devices whose streams
 * it holds to the presence service (internal `PresenceService/ReportDevices`) in batches:
 *
 * - every live device once per report interval (the presence service's answer says how long;
 *   until the first answer, `intervalMs`), as a heartbeat of that device;
 * - a device whose first stream opened, or whose last stream closed (`gone`: going offline, so
 *   the presence grace applies), within `flushDelayMs` (default 100 ms), batched with others.
 *
 * `withPresenceReports(delivery, reporter)` wraps the Delivery port: attach and detach pass
 * through unchanged and tell the reporter. A stream replaced by a newer one of the same device
 * keeps the device live. Reporting is best effort: a failed report is logged and the next one
 * (at most an interval later) sends the live set again; chat never waits for presence.
 */
import { create } from "@bufbuild/protobuf";
import { ReportDevicesRequestSchema, PresenceService } from "../../gen/switchboard/presence/v1/presence_pb.js";
import { createGrpcClient, type GrpcClient } from "../../platform/grpc/client.js";
import type { Delivery, LiveStream } from "./ports.js";

/** Devices per ReportDevices call (the presence service accepts up to 10,000). */
const BATCH = 5_000;

export interface DeviceReports {
  attached(userId: string, deviceId: string): void;
  detached(userId: string, deviceId: string): void;
}

export interface PresenceReporterOptions {
  /** "host:port" of the presence service (upstreamAddress("presence")). */
  readonly target: string;
  /** Until the presence service says otherwise: its heartbeat interval (config.presence.heartbeatIntervalMs). */
  readonly intervalMs: number;
  readonly flushDelayMs?: number;
  readonly onError?: (what: string, err: unknown) => void;
}

interface Device {
  readonly userId: string;
  readonly deviceId: string;
}

export class PresenceReporter implements DeviceReports {
  private readonly live = new Map<string, Device>();
  private readonly fresh = new Map<string, Device>();
  private readonly gone = new Map<string, Device>();
  private readonly client: GrpcClient<typeof PresenceService>;
  private intervalMs: number;
  private periodic: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private closed = false;
  private readonly onError: (what: string, err: unknown) => void;

  constructor(private readonly opts: PresenceReporterOptions) {
    this.intervalMs = opts.intervalMs;
    this.onError = opts.onError ?? (() => {});
    this.client = createGrpcClient(PresenceService, opts.target, { defaultTimeoutMs: 5_000 });
    this.schedulePeriodic();
  }

  attached(userId: string, deviceId: string): void {
    const key = keyOf(userId, deviceId);
    const d = { userId, deviceId };
    this.gone.delete(key);
    if (!this.live.has(key)) this.fresh.set(key, d);
    this.live.set(key, d);
    this.flushSoon();
  }

  detached(userId: string, deviceId: string): void {
    const key = keyOf(userId, deviceId);
    if (!this.live.delete(key)) return;
    this.fresh.delete(key);
    this.gone.set(key, { userId, deviceId });
    this.flushSoon();
  }

  /** Live devices now (tests, metrics). */
  get size(): number {
    return this.live.size;
  }

  /** Stops reporting; the devices still live are reported gone (this server stops holding them). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.periodic) clearTimeout(this.periodic);
    if (this.soon) clearTimeout(this.soon);
    await this.sending;
    for (const [k, d] of this.live) this.gone.set(k, d);
    this.live.clear();
    await this.send([], [...this.gone.values()]).catch((e: unknown) => this.onError("report devices gone on close", e));
    this.client.close();
  }

  private flushSoon(): void {
    if (this.soon || this.closed) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      const fresh = [...this.fresh.values()];
      const gone = [...this.gone.values()];
      this.fresh.clear();
      this.gone.clear();
      this.track(this.send(fresh, gone));
    }, this.opts.flushDelayMs ?? 100);
    this.soon.unref?.();
  }

  private schedulePeriodic(): void {
    if (this.closed) return;
    this.periodic = setTimeout(() => {
      this.fresh.clear();
      this.track(this.send([...this.live.values()], []).finally(() => this.schedulePeriodic()));
    }, this.intervalMs);
    this.periodic.unref?.();
  }

  private track(p: Promise<void>): void {
    const run = p.catch((e: unknown) => this.onError("report devices", e));
    this.sending = run;
    void run.finally(() => {
      if (this.sending === run) this.sending = undefined;
    });
  }

  private async send(live: readonly Device[], gone: readonly Device[]): Promise<void> {
    for (let i = 0; i < Math.max(live.length, gone.length); i += BATCH) {
      const res = await this.client.reportDevices(create(ReportDevicesRequestSchema, { live: live.slice(i, i + BATCH), gone: gone.slice(i, i + BATCH) }));
      const next = res.nextReportIn;
      if (next) this.intervalMs = Math.max(100, Number(next.seconds) * 1000 + Math.floor(next.nanos / 1e6));
    }
  }
}

/** The Delivery port with device reports on attach and detach (the streams themselves unchanged). */
export function withPresenceReports(delivery: Delivery, reports: DeviceReports): Delivery {
  const current = new Map<string, LiveStream>();
  return {
    attach(stream) {
      const previous = delivery.attach(stream);
      current.set(keyOf(stream.userId, stream.deviceId), stream);
      reports.attached(stream.userId, stream.deviceId);
      return previous;
    },
    detach(stream) {
      delivery.detach(stream);
      const key = keyOf(stream.userId, stream.deviceId);
      // A replaced stream's detach must not take the device its successor holds offline.
      if (current.get(key) !== stream) return;
      current.delete(key);
      reports.detached(stream.userId, stream.deviceId);
    },
    deliver: (userIds, event, except) => delivery.deliver(userIds, event, except),
    size: () => delivery.size(),
  };
}

function keyOf(userId: string, deviceId: string): string {
  return `${userId}\u0000${deviceId}`;
}
