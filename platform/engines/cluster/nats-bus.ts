import {
  AckPolicy,
  DeliverPolicy,
  ErrorCode,
  NatsError,
  connect,
  nanos,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  type Subscription,
} from "nats";
import { DomainError, invalidArgument, notFound, unavailable } from "../../errors.js";
import {
  checkSubject,
  type BusMessage,
  type ConsumeOptions,
  type ConsumerLag,
  type Consumption,
  type DurableMessage,
  type EventBus,
  type PublishAck,
  type StreamOptions,
  type Unsubscribe,
} from "../../ports/event-bus.js";
import { silentLog, type EngineLog } from "../log.js";

export interface NatsBusOptions {
  readonly servers: readonly string[];
  /** Connection name shown by the server (monitoring). */
  readonly name?: string;
  /** JetStream API / publish ack timeout (default 5000). */
  readonly requestTimeoutMs?: number;
  readonly log?: EngineLog;
}

interface LocalSub {
  pattern: string;
  handler: (msg: BusMessage) => void | Promise<void>;
  nats: Subscription | undefined;
  active: boolean;
}

/**
 * EventBus on NATS core (publish/subscribe) and JetStream (durable streams).
 *
 * The first connection is made in the background and retried forever, so constructing this never
 * fails and never crashes the process; once connected, the nats client reconnects by itself
 * (subscriptions and consumers resume). Until then / while disconnected, JetStream calls and
 * publish fail fast with Unavailable; subscriptions are attached when the connection comes up.
 */
export class NatsBus implements EventBus {
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private connected = false;
  private closed = false;
  private lastError: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly subs = new Set<LocalSub>();
  private readonly connectionListeners = new Set<(connected: boolean) => void>();
  private readonly consumptions = new Set<ConsumerMessages>();
  private readonly log: EngineLog;
  private readonly timeoutMs: number;
  private readonly firstConnect: Promise<void>;
  private resolveFirst: () => void = () => {};

  constructor(private readonly options: NatsBusOptions) {
    this.log = (options.log ?? silentLog).child({ component: "nats-bus" });
    this.timeoutMs = options.requestTimeoutMs ?? 5_000;
    this.firstConnect = new Promise((r) => (this.resolveFirst = r));
    void this.connectLoop(0);
  }

  /** Resolves once connected (tests and startup logs); never rejects. */
  whenConnected(): Promise<void> {
    return this.firstConnect;
  }

  status(): { ok: boolean; detail: string } {
    if (this.connected && this.nc) {
      return { ok: true, detail: `connected to ${this.nc.getServer()} (nats-server ${this.nc.info?.version ?? "?"})` };
    }
    return { ok: false, detail: `not connected to ${this.options.servers.join(",")}${this.lastError ? `: ${this.lastError}` : ""}` };
  }

  /** Version of the server this client is connected to. */
  serverVersion(): string | undefined {
    return this.nc?.info?.version;
  }

  onConnectionChange(listener: (connected: boolean) => void): Unsubscribe {
    this.connectionListeners.add(listener);
    listener(this.connected);
    return () => this.connectionListeners.delete(listener);
  }

  publish(subject: string, data: Uint8Array): void {
    checkSubject(subject, false);
    const nc = this.nc;
    if (!nc || nc.isClosed()) throw unavailable("nats");
    // While reconnecting the client buffers (bounded); at-most-once either way.
    nc.publish(subject, data);
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void | Promise<void>): Unsubscribe {
    checkSubject(subject, true);
    const sub: LocalSub = { pattern: subject, handler, nats: undefined, active: true };
    this.subs.add(sub);
    if (this.nc && !this.nc.isClosed()) this.attach(this.nc, sub);
    return () => {
      sub.active = false;
      this.subs.delete(sub);
      sub.nats?.unsubscribe();
    };
  }

  async ensureStream(name: string, subjects: readonly string[], options: StreamOptions = {}): Promise<void> {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw invalidArgument("stream", `invalid name "${name}"`);
    if (subjects.length === 0) throw invalidArgument("subjects", "at least one subject");
    for (const s of subjects) checkSubject(s, true);
    const jsm = this.manager();
    const cfg = {
      subjects: [...subjects],
      ...(options.maxAgeMs !== undefined ? { max_age: nanos(options.maxAgeMs) } : {}),
      duplicate_window: nanos(options.duplicateWindowMs ?? 120_000),
    };
    await this.wrap("ensureStream", async () => {
      const existing = await jsm.streams.info(name).catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
      if (existing) await jsm.streams.update(name, cfg);
      else await jsm.streams.add({ name, ...cfg });
    });
  }

  async publishDurable(subject: string, data: Uint8Array, msgId: string): Promise<PublishAck> {
    checkSubject(subject, false);
    const js = this.jetstream();
    return this.wrap("publishDurable", async () => {
      try {
        const ack = await js.publish(subject, data, { msgID: msgId, timeout: this.timeoutMs });
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (err) {
        if (err instanceof NatsError && err.code === ErrorCode.NoResponders && this.connected) {
          throw new DomainError("FailedPrecondition", `no stream captures subject ${subject}`, {}, { cause: err });
        }
        throw err;
      }
    });
  }

  async consume(
    stream: string,
    durableName: string,
    handler: (msg: DurableMessage) => void | Promise<void>,
    options: ConsumeOptions = {},
  ): Promise<Consumption> {
    const jsm = this.manager();
    const js = this.jetstream();
    const messages = await this.wrap("consume", async () => {
      try {
        await jsm.streams.info(stream);
      } catch (err) {
        if (isNotFound(err)) throw notFound(`stream ${stream}`);
        throw err;
      }
      const wanted = {
        ack_wait: nanos(options.ackWaitMs ?? 30_000),
        ...(options.maxDeliver !== undefined ? { max_deliver: options.maxDeliver } : {}),
      };
      const info = await jsm.consumers.info(stream, durableName).catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
      if (!info) {
        await jsm.consumers.add(stream, {
          durable_name: durableName,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ...(options.filterSubject !== undefined ? { filter_subject: options.filterSubject } : {}),
          ...wanted,
        });
      } else if (info.config.ack_wait !== wanted.ack_wait || (wanted.max_deliver ?? -1) !== (info.config.max_deliver ?? -1)) {
        await jsm.consumers.update(stream, durableName, { ...wanted, max_deliver: wanted.max_deliver ?? -1 });
      }
      const consumer = await js.consumers.get(stream, durableName);
      return consumer.consume({ max_messages: 64 });
    });
    this.consumptions.add(messages);
    // Acks and naks of one event-loop turn leave in one socket write, not one write each (a
    // handler settles as its own I/O completes, one callback at a time).
    let settles: (() => void)[] = [];
    const flushSettles = (): void => {
      const now = settles;
      settles = [];
      for (const settle of now) settle();
    };
    const settleSoon = (settle: () => void): void => {
      settles.push(settle);
      if (settles.length === 1) setImmediate(flushSettles);
    };
    const done = (async () => {
      for await (const m of messages) {
        let settled = false;
        const msg: DurableMessage = {
          subject: m.subject,
          data: m.data,
          seq: m.seq,
          deliveryCount: m.info.deliveryCount,
          ack: () => {
            if (settled) return;
            settled = true;
            settleSoon(() => m.ack());
          },
          nak: (delayMs?: number) => {
            if (settled) return;
            settled = true;
            settleSoon(() => m.nak(delayMs));
          },
        };
        try {
          await handler(msg);
        } catch (err) {
          this.log.warn({ err, stream, durableName, seq: m.seq }, "durable handler failed; redelivering");
          msg.nak();
        }
      }
    })().catch((err: unknown) => this.log.warn({ err, stream, durableName }, "consumer stopped"));
    return {
      stop: async () => {
        this.consumptions.delete(messages);
        flushSettles();
        messages.stop();
        await done;
        flushSettles();
      },
    };
  }

  async consumerInfo(stream: string, durableName: string): Promise<ConsumerLag> {
    const jsm = this.manager();
    return this.wrap("consumerInfo", async () => {
      const info = await jsm.consumers.info(stream, durableName).catch((err: unknown) => {
        if (isNotFound(err)) throw notFound(`consumer ${stream}/${durableName}`);
        throw err;
      });
      const ackFloorSeq = info.ack_floor.stream_seq;
      const pending = info.num_pending;
      const ackPending = info.num_ack_pending;
      let oldestUnacked: Date | undefined;
      if (pending + ackPending > 0) {
        // The message right after the ack floor is the oldest one not acked; it may have been
        // removed (age/limits), then the next stored one is the oldest still to be recorded.
        const m = await jsm.streams.getMessage(stream, { seq: ackFloorSeq + 1, next_by_subj: ">" } as { seq: number }).catch(() => undefined);
        oldestUnacked = m?.time;
      }
      return { ackFloorSeq, pending, ackPending, oldestUnacked };
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const c of this.consumptions) c.stop();
    this.consumptions.clear();
    const nc = this.nc;
    this.nc = undefined;
    this.connected = false;
    if (nc && !nc.isClosed()) await nc.close().catch(() => {});
  }

  private async connectLoop(attempt: number): Promise<void> {
    if (this.closed) return;
    try {
      const nc = await connect({
        servers: [...this.options.servers],
        name: this.options.name ?? "switchboard",
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        timeout: 2_000,
      });
      let jsm: JetStreamManager;
      try {
        jsm = await nc.jetstreamManager({ timeout: this.timeoutMs, checkAPI: false });
      } catch (err) {
        await nc.close().catch(() => {});
        throw err;
      }
      if (this.closed) {
        await nc.close();
        return;
      }
      this.nc = nc;
      this.js = nc.jetstream({ timeout: this.timeoutMs });
      this.jsm = jsm;
      this.setConnected(true);
      this.lastError = undefined;
      this.log.info({ server: nc.getServer(), version: nc.info?.version }, "nats connected");
      for (const sub of this.subs) this.attach(nc, sub);
      this.resolveFirst();
      void this.watch(nc);
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      if (attempt === 0) this.log.warn({ err: this.lastError }, "nats unreachable; retrying in the background");
      this.retryTimer = setTimeout(() => void this.connectLoop(attempt + 1), Math.min(200 * 2 ** Math.min(attempt, 4), 2_000));
      this.retryTimer.unref?.();
    }
  }

  private async watch(nc: NatsConnection): Promise<void> {
    void nc.closed().then((err) => {
      this.setConnected(false);
      if (this.nc === nc) this.nc = undefined;
      if (err) this.lastError = err.message;
      if (!this.closed) {
        this.log.warn({ err: err?.message }, "nats connection closed; reconnecting");
        void this.connectLoop(0);
      }
    });
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        this.setConnected(false);
        this.lastError = "disconnected";
        this.log.warn({ server: s.data }, "nats disconnected");
      } else if (s.type === "reconnect") {
        this.setConnected(true);
        this.lastError = undefined;
        this.log.info({ server: s.data }, "nats reconnected");
      } else if (s.type === "error") {
        this.lastError = String(s.data);
      }
    }
  }

  private setConnected(up: boolean): void {
    if (this.connected === up) return;
    this.connected = up;
    for (const listener of this.connectionListeners) {
      try {
        listener(up);
      } catch (e) {
        this.log.warn({ err: e }, "connection listener failed");
      }
    }
  }

  private attach(nc: NatsConnection, sub: LocalSub): void {
    if (!sub.active) return;
    sub.nats = nc.subscribe(sub.pattern, {
      callback: (err, m) => {
        if (err || !sub.active) return;
        try {
          void Promise.resolve(sub.handler({ subject: m.subject, data: m.data })).catch((e: unknown) =>
            this.log.warn({ err: e, subject: m.subject }, "bus subscriber failed"),
          );
        } catch (e) {
          this.log.warn({ err: e, subject: m.subject }, "bus subscriber failed");
        }
      },
    });
  }

  private jetstream(): JetStreamClient {
    if (!this.connected || !this.js) throw new DomainError("Unavailable", `nats is unavailable (${this.status().detail})`, { retryAfterMs: 1000 });
    return this.js;
  }

  private manager(): JetStreamManager {
    if (!this.connected || !this.jsm) throw new DomainError("Unavailable", `nats is unavailable (${this.status().detail})`, { retryAfterMs: 1000 });
    return this.jsm;
  }

  private async wrap<T>(op: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      if (err instanceof DomainError) throw err;
      if (err instanceof NatsError && err.isJetStreamError()) {
        const api = err.jsError();
        throw new DomainError("FailedPrecondition", `nats ${op}: ${api?.description ?? err.message}`, {}, { cause: err });
      }
      throw unavailable(`nats (${op})`, err);
    }
  }
}

function isNotFound(err: unknown): boolean {
  if (!(err instanceof NatsError)) return false;
  const api = err.jsError();
  return api?.code === 404 || /not found/i.test(err.message);
}
