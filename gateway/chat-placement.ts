/**
 * Places chat calls on chat servers. The gateway watches the chat-server registry
 * (services/chat/cluster/registry.ts) and gives each new live stream (Subscribe, Session) to the
 * least loaded server that is not draining; other calls go round robin. A user's devices may
 * land on different servers: the servers route live events to each other.
 *
 * Load = the streams a server last reported + the streams this gateway placed on it after that
 * count was taken (reports carry their time; one arrives within about a second of a change), so a
 * burst of connections spreads instead of piling onto the server that looked emptiest a second ago. A server whose connection fails is skipped for a
 * few seconds (a killed server stays in the registry until its ZooKeeper session times out), so
 * its clients' reconnects land elsewhere at once. With no server registered (a registry not
 * reachable yet, or a deployment without one), calls go to the configured chat address.
 *
 * A server that leaves the registry keeps its lanes while streams ride on them: a registry that
 * lists no server for a moment (the gateway's ZooKeeper session expired and the watch re-reads)
 * must neither replace the lanes of a server that is still there nor cut its streams. Those
 * streams end when their server ends them or their connection fails (UNAVAILABLE: the lane's
 * keep-alive notices a dead one); a lane is closed once its last stream ended and its server is
 * not listed, and a lane closed under its streams (the placement closing) ends them with
 * UNAVAILABLE and a retry hint, never leaves them open and silent.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { createGrpcClient, type GrpcClient } from "../platform/grpc/client.js";
import { RETRY_AFTER_MS_HEADER } from "../platform/grpc/status.js";
import type { Coordinator } from "../platform/ports/coordinator.js";
import { watchChatServers, type ChatServerInfo } from "../services/chat/cluster/registry.js";
import { UPSTREAM_CONNECT_TIMEOUT_MS, type AnyUpstreamClient } from "./forward.js";
import { localServerAt } from "../platform/grpc/in-process.js";
import { IDENTITY_ASSERTION_HEADER } from "../platform/identity.js";
import type { SubscribeRequest, SubscribeResponse } from "../gen/switchboard/chat/v1/chat_pb.js";
import { ChatRelay, type RelayCallFn } from "./chat-relay.js";
import { feedFromIterable, iterateFeed, type LiveFeed } from "./live-feed.js";
import { decodedResponses, type RelayedResponse } from "./relayed-response.js";

/** Placements are forgotten after this (a report has counted them by then, or the server is gone). */
const PLACED_WINDOW_MS = 5_000;
/** A server that failed to connect is skipped this long. */
const SUSPECT_MS = 5_000;
/** Servers tried per call before answering Unavailable. */
const MAX_TRIES = 3;
/** Streams per HTTP/2 connection to a chat server before another connection is opened. */
const STREAMS_PER_LANE = 200;
const MAX_LANES = 256;

interface Lane {
  readonly client: Record<string, unknown> & Pick<GrpcClient<DescService>, "close" | "rawBidi">;
  active: number;
  /** One per stream riding on this lane: aborted (with the reason) when the lane is closed under it. */
  readonly streams: Set<AbortController>;
}

export interface ChatPlacementOptions {
  readonly desc: DescService;
  readonly coordinator: Coordinator;
  /** The registry's path (chatServersPath of the mesh's keyspace). */
  readonly path: string;
  /** The configured chat upstream, used while the registry lists no server. */
  readonly fallbackAddress: string;
  readonly log: Logger;
  readonly registry?: Registry;
  readonly now?: () => number;
  /** Subscribe streams to a chat server in another process ride on one Relay call to it (gateway/chat-relay.ts). */
  readonly relay?: { readonly keepAliveMs: number; readonly outboxEvents: number };
}

/** A bidi call whose messages are bytes (ChatPlacement.openRaw); `done` once it is over. */
export interface RawCall {
  readonly call: ReturnType<GrpcClient<DescService>["rawBidi"]>;
  done(): void;
}

interface Target {
  readonly id: string;
  readonly address: string;
}

export class ChatPlacement {
  private servers: readonly ChatServerInfo[] = [];
  /** Addresses calls may be placed on now: the registered servers' and the configured one. */
  private listed: ReadonlySet<string>;
  private readonly clients = new Map<string, GrpcClient<DescService>>();
  private readonly lanes = new Map<string, Lane[]>();
  private readonly relays = new Map<string, ChatRelay>();
  private readonly placed = new Map<string, number[]>();
  private readonly suspectUntil = new Map<string, number>();
  private roundRobin = 0;
  /** Lane numbers are never reused: a lane kept for its streams must not share a channel with a new one. */
  private nextLane = 0;
  private readonly unwatch: () => void;
  private readonly now: () => number;
  private readonly decisions: Counter<"kind" | "server"> | undefined;

  constructor(private readonly opts: ChatPlacementOptions) {
    this.now = opts.now ?? Date.now;
    this.listed = new Set([opts.fallbackAddress]);
    this.unwatch = watchChatServers(opts.coordinator, opts.path, (servers) => this.update(servers));
    if (opts.registry) {
      const self = this;
      this.decisions = new Counter({
        name: "gateway_chat_placements_total",
        help: "Chat calls placed on a chat server by this gateway (kind: stream = Subscribe/Session, call = the rest; server: registry id, or 'configured' when the registry lists none)",
        labelNames: ["kind", "server"] as const,
        registers: [opts.registry],
      });
      new Gauge({
        name: "gateway_chat_servers",
        help: "Chat servers in the registry as this gateway sees them, by state",
        labelNames: ["state"] as const,
        registers: [opts.registry],
        collect() {
          const now = self.now();
          const s = self.servers;
          this.set({ state: "serving" }, s.filter((x) => !x.draining && !self.isSuspect(x.id, now)).length);
          this.set({ state: "draining" }, s.filter((x) => x.draining).length);
          this.set({ state: "unreachable" }, s.filter((x) => !x.draining && self.isSuspect(x.id, now)).length);
        },
      });
      new Gauge({
        name: "gateway_chat_server_streams",
        help: "Live streams each registered chat server reported holding",
        labelNames: ["server"] as const,
        registers: [opts.registry],
        collect() {
          this.reset();
          for (const s of self.servers) this.set({ server: s.id }, s.streams);
        },
      });
    }
  }

  /** The registry as last seen (readiness detail, tests). */
  get registered(): readonly ChatServerInfo[] {
    return this.servers;
  }

  /** A client-shaped object whose every method places its call first (for forwardingImpl). */
  upstream(): AnyUpstreamClient {
    const out: Record<string, unknown> = {};
    for (const method of this.opts.desc.methods) {
      const name = method.localName;
      if (method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming") {
        const self = this;
        const relayed = name === "subscribe" && this.opts.relay !== undefined;
        out[name] = async function* (input: unknown, options: CallOptions) {
          const address = await self.pick("stream");
          const feed = relayed ? self.relayedFeed(address, input as SubscribeRequest, options) : undefined;
          if (feed) yield* decodedResponses(iterateFeed(feed, options.signal));
          else yield* self.onLane(address, name, input, options);
        };
      } else {
        out[name] = async (input: unknown, options: CallOptions) => {
          const client = this.clientFor(await this.pick("call")) as unknown as Record<string, unknown>;
          return (client[name] as (i: unknown, o: CallOptions) => Promise<unknown>)(input, options);
        };
      }
    }
    return out as AnyUpstreamClient;
  }

  /**
   * Subscribe as the subscribe door pulls it (gateway/subscribe-door.ts): placed as upstream()
   * places it, relayed to a chat server in another process, else the call's responses as a feed.
   */
  async openSubscribe(input: SubscribeRequest, options: CallOptions): Promise<LiveFeed<RelayedResponse>> {
    const address = await this.pick("stream");
    return this.relayedFeed(address, input, options) ?? feedFromIterable((signal) => this.onLane(address, "subscribe", input, { ...options, signal }) as AsyncIterable<SubscribeResponse>);
  }

  /**
   * Subscribe on the Relay call to a chat server in another process; undefined without a relay
   * or for a server of this same process (reached by the in-process hop, per call, already).
   */
  private relayedFeed(address: string, input: SubscribeRequest, options: CallOptions): LiveFeed<RelayedResponse> | undefined {
    if (this.opts.relay === undefined || localServerAt(address)) return undefined;
    const assertion = new Headers(options.headers).get(IDENTITY_ASSERTION_HEADER) ?? "";
    return this.relayTo(address).open(input.deviceId, assertion, () => this.closeIdleLanes(address));
  }

  /**
   * A bidi call as the session door runs it (gateway/session-door.ts): placed like every live
   * stream, on one of the server's lanes, its messages passed as bytes. `closed` is called (once)
   * with the reason when the lane is closed under the call; `done` must be called once it is over.
   */
  async openRaw(path: string, headers: Headers, closed: (reason: ConnectError) => void): Promise<RawCall> {
    const seat = this.seatOnLane(await this.pick("stream"));
    seat.stop.signal.addEventListener("abort", () => closed(seat.stop.signal.reason as ConnectError), { once: true });
    try {
      return { call: seat.lane.client.rawBidi(path, headers), done: seat.leave };
    } catch (e) {
      seat.leave();
      throw e;
    }
  }

  /**
   * A stream's place on one of the address's lanes: `stop` is aborted (with the reason) when the
   * lane is closed under it; `leave` (idempotent) gives the place back once the stream is over.
   */
  private seatOnLane(address: string): { readonly lane: Lane; readonly stop: AbortController; leave(): void } {
    const lane = this.streamLane(address);
    const stop = new AbortController();
    lane.streams.add(stop);
    let left = false;
    const leave = (): void => {
      if (left) return;
      left = true;
      lane.streams.delete(stop);
      lane.active--;
      this.closeIdleLanes(address);
    };
    return { lane, stop, leave };
  }

  /** A streaming call on one of the address's lanes. */
  private async *onLane(address: string, name: string, input: unknown, options: CallOptions): AsyncGenerator<unknown> {
    const { lane, stop, leave } = this.seatOnLane(address);
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    try {
      yield* (lane.client[name] as (i: unknown, o: CallOptions) => AsyncIterable<unknown>)(input, { ...options, signal });
    } catch (e) {
      // Our own abort comes back as Canceled; the client needs the reason (reconnect).
      throw stop.signal.aborted ? stop.signal.reason : e;
    } finally {
      leave();
    }
  }

  close(): void {
    this.unwatch();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    for (const lanes of this.lanes.values()) for (const l of lanes) closeLane(l);
    this.lanes.clear();
    for (const r of [...this.relays.values()]) r.close();
    this.relays.clear();
  }

  /** The Relay call to a server, started when there is none (or the last one ended). */
  private relayTo(address: string): ChatRelay {
    const known = this.relays.get(address);
    if (known && !known.ended) return known;
    // A channel of its own: its connection carries the relayed streams only.
    const client = createGrpcClient(this.opts.desc, address, {
      channelOptions: { "grpc.use_local_subchannel_pool": 1, "switchboard.lane": this.nextLane++ },
    }) as unknown as { relay: RelayCallFn; close(): void };
    const relay: ChatRelay = new ChatRelay({
      call: (requests, options) => client.relay(requests, options),
      keepAliveMs: this.opts.relay!.keepAliveMs,
      outboxEvents: this.opts.relay!.outboxEvents,
      log: this.opts.log.child({ relayTo: address }),
      onEnd: () => {
        client.close();
        if (this.relays.get(address) === relay) this.relays.delete(address);
      },
    });
    this.relays.set(address, relay);
    return relay;
  }

  /** Chooses a server, checks it is reachable (else skips it for a while and tries another). */
  private async pick(kind: "stream" | "call"): Promise<string> {
    const tried = new Set<string>();
    for (let i = 0; i < MAX_TRIES; i++) {
      const target = this.choose(kind, tried);
      if (!target) break;
      tried.add(target.id);
      const client = this.clientFor(target.address);
      if (await client.connectedWithin(UPSTREAM_CONNECT_TIMEOUT_MS)) {
        if (kind === "stream") this.notePlaced(target.id);
        this.decisions?.inc({ kind, server: target.id });
        return target.address;
      }
      this.suspectUntil.set(target.id, this.now() + SUSPECT_MS);
      this.opts.log.warn({ server: target.id }, "chat server unreachable; placing elsewhere");
    }
    throw new ConnectError("upstream not connected", Code.Unavailable);
  }

  private choose(kind: "stream" | "call", tried: ReadonlySet<string>): Target | undefined {
    if (this.servers.length === 0) return tried.has("configured") ? undefined : { id: "configured", address: this.opts.fallbackAddress };
    const now = this.now();
    const open = this.servers.filter((s) => !s.draining && !tried.has(s.id));
    const healthy = open.filter((s) => !this.isSuspect(s.id, now));
    // All suspect: try them anyway (a suspicion may be stale) rather than refuse outright.
    const pool = healthy.length > 0 ? healthy : open;
    if (pool.length === 0) return undefined;
    if (kind === "call") return pool[this.roundRobin++ % pool.length];
    let best: ChatServerInfo[] = [];
    let bestLoad = Infinity;
    for (const s of pool) {
      const load = s.streams + this.placementsSince(s.id, s.at, now);
      if (load < bestLoad) {
        bestLoad = load;
        best = [s];
      } else if (load === bestLoad) best.push(s);
    }
    return best[Math.floor(Math.random() * best.length)];
  }

  private isSuspect(id: string, now: number): boolean {
    const until = this.suspectUntil.get(id);
    return until !== undefined && until > now;
  }

  /** This gateway's placements on a server after its report was counted (all recent ones if the report has no time). */
  private placementsSince(id: string, reportedAt: number, now: number): number {
    const list = this.placed.get(id);
    if (!list) return 0;
    while (list.length > 0 && list[0]! < now - PLACED_WINDOW_MS) list.shift();
    let n = 0;
    for (let i = list.length - 1; i >= 0 && list[i]! > reportedAt; i--) n++;
    return n;
  }

  private notePlaced(id: string): void {
    let list = this.placed.get(id);
    if (!list) this.placed.set(id, (list = []));
    list.push(this.now());
  }

  /**
   * Streams to one server are spread over several HTTP/2 connections ("lanes"), a new one for
   * every STREAMS_PER_LANE: a server's HTTP/2 stack (nghttp2, Node 20) closes a connection that
   * resets more than ~1,000 streams in a burst or ~33/s after it, and every client that leaves
   * resets its upstream stream. On one shared connection, a wave of departures would cut every
   * other stream on it; per lane the budget scales with the streams.
   */
  private streamLane(address: string): Lane {
    let lanes = this.lanes.get(address);
    if (!lanes) this.lanes.set(address, (lanes = []));
    let best: Lane | undefined;
    for (const l of lanes) if (!best || l.active < best.active) best = l;
    if (!best || (best.active >= STREAMS_PER_LANE && lanes.length < MAX_LANES)) {
      best = {
        client: createGrpcClient(this.opts.desc, address, {
          // A distinct option set is a distinct channel; its own subchannel pool, its own connection.
          channelOptions: { "grpc.use_local_subchannel_pool": 1, "switchboard.lane": this.nextLane++ },
        }) as unknown as Lane["client"],
        active: 0,
        streams: new Set(),
      };
      lanes.push(best);
    }
    best.active++;
    return best;
  }

  private clientFor(address: string): GrpcClient<DescService> {
    let c = this.clients.get(address);
    if (!c) this.clients.set(address, (c = createGrpcClient(this.opts.desc, address)));
    return c;
  }

  private update(servers: readonly ChatServerInfo[]): void {
    const before = new Set(this.servers.map((s) => s.id));
    this.servers = servers;
    const now = new Set(servers.map((s) => s.id));
    for (const s of servers) if (!before.has(s.id)) this.opts.log.info({ server: s.id, address: s.address }, "chat server joined");
    for (const id of before) {
      if (now.has(id)) continue;
      this.opts.log.info({ server: id }, "chat server left");
      this.placed.delete(id);
      this.suspectUntil.delete(id);
    }
    // A server that left keeps the lanes its streams ride on (it may be back at once: a registry
    // re-read after a session expiry); the rest of its connections are closed.
    this.listed = new Set([...servers.map((s) => s.address), this.opts.fallbackAddress]);
    for (const address of [...this.lanes.keys()]) this.closeIdleLanes(address);
    for (const [address, c] of this.clients) {
      if (this.listed.has(address) || this.lanes.has(address) || this.relays.has(address)) continue;
      c.close();
      this.clients.delete(address);
    }
  }

  /** Closes the lanes of an address no longer listed once no stream rides on them (and its client with the last). */
  private closeIdleLanes(address: string): void {
    if (this.listed.has(address)) return;
    const relay = this.relays.get(address);
    if (relay && relay.size > 0) return;
    relay?.close();
    const lanes = this.lanes.get(address);
    if (lanes) {
      const busy = lanes.filter((l) => l.active > 0);
      for (const l of lanes) if (l.active <= 0) closeLane(l);
      if (busy.length > 0) {
        this.lanes.set(address, busy);
        return;
      }
      this.lanes.delete(address);
    }
    this.clients.get(address)?.close();
    this.clients.delete(address);
  }
}

/**
 * Closes a lane; streams still on it are ended with UNAVAILABLE and a retry hint (a grpc-js channel
 * closed under a call lets the call run on: its client must not be left on a stream nobody owns).
 */
function closeLane(lane: Lane): void {
  for (const stop of lane.streams) {
    stop.abort(new ConnectError("chat server connection closed: reconnect (with backoff) and Sync from your cursor", Code.Unavailable, {
      [RETRY_AFTER_MS_HEADER]: "0",
    }));
  }
  lane.client.close();
}
