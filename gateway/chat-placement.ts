/**
 * Places chat calls on chat servers. The gateway watches the chat-server registry
 * (services/chat/cluster/registry.ts) and gives each new live stream (Subscribe, Session) to the
 * least loaded server that is not draining; other calls go round robin. A user's devices may
 * land on different servers: the servers route live events to each other.
 *
 * Load = the streams a server last reported + the streams this gateway placed on it since (a
 * report arrives about once a second), so a burst of connections spreads instead of piling onto
 * the server that looked emptiest a second ago. A server whose connection fails is skipped for a
 * few seconds (a killed server stays in the registry until its ZooKeeper session times out), so
 * its clients' reconnects land elsewhere at once. With no server registered (a registry not
 * reachable yet, or a deployment without one), calls go to the configured chat address.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { createGrpcClient, type GrpcClient } from "../platform/grpc/client.js";
import type { Coordinator } from "../platform/ports/coordinator.js";
import { watchChatServers, type ChatServerInfo } from "../services/chat/cluster/registry.js";
import { UPSTREAM_CONNECT_TIMEOUT_MS, type AnyUpstreamClient } from "./forward.js";

/** Placements younger than this are added to a server's reported load. */
const PLACED_WINDOW_MS = 2_000;
/** A server that failed to connect is skipped this long. */
const SUSPECT_MS = 5_000;
/** Servers tried per call before answering Unavailable. */
const MAX_TRIES = 3;

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
}

interface Target {
  readonly id: string;
  readonly address: string;
}

export class ChatPlacement {
  private servers: readonly ChatServerInfo[] = [];
  private readonly clients = new Map<string, GrpcClient<DescService>>();
  private readonly placed = new Map<string, number[]>();
  private readonly suspectUntil = new Map<string, number>();
  private roundRobin = 0;
  private readonly unwatch: () => void;
  private readonly now: () => number;
  private readonly decisions: Counter<"kind" | "server"> | undefined;

  constructor(private readonly opts: ChatPlacementOptions) {
    this.now = opts.now ?? Date.now;
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
        out[name] = async function* (input: unknown, options: CallOptions) {
          const client = await self.pick("stream");
          yield* (client[name] as (i: unknown, o: CallOptions) => AsyncIterable<unknown>)(input, options);
        };
      } else {
        out[name] = async (input: unknown, options: CallOptions) => {
          const client = await this.pick("call");
          return (client[name] as (i: unknown, o: CallOptions) => Promise<unknown>)(input, options);
        };
      }
    }
    return out as AnyUpstreamClient;
  }

  close(): void {
    this.unwatch();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  /** Chooses a server, checks it is reachable (else skips it for a while and tries another). */
  private async pick(kind: "stream" | "call"): Promise<Record<string, unknown>> {
    const tried = new Set<string>();
    for (let i = 0; i < MAX_TRIES; i++) {
      const target = this.choose(kind, tried);
      if (!target) break;
      tried.add(target.id);
      const client = this.clientFor(target.address);
      if (await client.connectedWithin(UPSTREAM_CONNECT_TIMEOUT_MS)) {
        if (kind === "stream") this.notePlaced(target.id);
        this.decisions?.inc({ kind, server: target.id });
        return client as unknown as Record<string, unknown>;
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
      const load = s.streams + this.recentPlacements(s.id, now);
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

  private recentPlacements(id: string, now: number): number {
    const list = this.placed.get(id);
    if (!list) return 0;
    while (list.length > 0 && list[0]! < now - PLACED_WINDOW_MS) list.shift();
    return list.length;
  }

  private notePlaced(id: string): void {
    let list = this.placed.get(id);
    if (!list) this.placed.set(id, (list = []));
    list.push(this.now());
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
    // Clients of servers that left are closed; streams still open on them end with the server.
    const addresses = new Set([...servers.map((s) => s.address), this.opts.fallbackAddress]);
    for (const [address, c] of this.clients) {
      if (addresses.has(address)) continue;
      c.close();
      this.clients.delete(address);
    }
  }
}
