/**
 * The chat-server registry in the Coordinator (ZooKeeper in clusters): each chat server keeps an
 * ephemeral node `/switchboard/<keyspace>/chat/servers/<server id>` holding where it is reached, how many
 * live streams it holds and whether it is draining. Gateways watch it to place new streams;
 * chat servers watch it to know where to route live events. A server that dies disappears with
 * its session (ZooKeeper's session timeout); a clean stop removes the node at once.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { ChildrenSnapshot, Coordinator, Registration } from "../../../platform/ports/coordinator.js";

/**
 * One registry per mesh: the processes that share a database keyspace are one mesh, so two
 * meshes (or two test runs) on one ZooKeeper never place calls on each other's servers.
 */
export function chatServersPath(keyspace: string): string {
  return `/switchboard/${keyspace}/chat/servers`;
}

export interface ChatServerInfo {
  /** Node name; also the server's NATS delivery subject token ([A-Za-z0-9_-]). */
  readonly id: string;
  /** "host:port" of its internal gRPC server. */
  readonly address: string;
  /** Live device streams it holds (as of its last update). */
  readonly streams: number;
  /** Shutting down: no new streams are placed on it. */
  readonly draining: boolean;
}

/**
 * A fresh id per process start (containers all run as pid 1, so host and pid would repeat). It
 * names no host: ids show in the gateway's public /readyz; each server logs its id with its address.
 */
export function newChatServerId(): string {
  return `chat-${randomBytes(6).toString("hex")}`;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeServerInfo(info: Omit<ChatServerInfo, "id">): Uint8Array {
  return enc.encode(JSON.stringify({ address: info.address, streams: info.streams, draining: info.draining }));
}

/** The registered servers of a snapshot; nodes that are not valid server entries are skipped. */
export function parseServers(snapshot: ChildrenSnapshot): ChatServerInfo[] {
  const out: ChatServerInfo[] = [];
  for (const [id, data] of snapshot) {
    try {
      const v = JSON.parse(dec.decode(data)) as Record<string, unknown>;
      if (typeof v["address"] !== "string" || v["address"] === "") continue;
      const streams = typeof v["streams"] === "number" && Number.isFinite(v["streams"]) ? Math.max(0, v["streams"]) : 0;
      out.push({ id, address: v["address"], streams, draining: v["draining"] === true });
    } catch {
      continue;
    }
  }
  return out;
}

/** Calls `listener` with the registered chat servers now and after every change. */
export function watchChatServers(coordinator: Coordinator, path: string, listener: (servers: readonly ChatServerInfo[]) => void): () => void {
  return coordinator.watchChildren(path, (snapshot) => listener(parseServers(snapshot)));
}

export interface ServerRegistrationOptions {
  readonly coordinator: Coordinator;
  /** chatServersPath(keyspace) */
  readonly path: string;
  readonly id: string;
  readonly address: string;
  /** Current live streams (read on every refresh). */
  readonly streams: () => number;
  readonly log: Logger;
  /** How often the load is rewritten when it changed (default 1 s). */
  readonly refreshMs?: number;
}

/**
 * Keeps this server's registry node present and current: registers (retrying while the
 * coordinator is unreachable), rewrites the stream count when it changed, registers again after
 * a session expiry, and removes the node on close.
 */
export class ChatServerRegistration {
  private registration: Registration | undefined;
  private draining = false;
  private written = "";
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Refreshes run one at a time; a refresh asked for while one runs runs once after it. */
  private chain: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;
  private readonly offSession: () => void;

  constructor(private readonly opts: ServerRegistrationOptions) {
    this.offSession = opts.coordinator.onSessionState((s) => {
      if (s === "expired") this.registration = undefined;
      if (s !== "disconnected") void this.refresh();
    });
    this.timer = setInterval(() => void this.refresh(), opts.refreshMs ?? 1_000);
    this.timer.unref();
    void this.refresh();
  }

  get registered(): boolean {
    return this.registration !== undefined;
  }

  /** Marks the server draining in the registry (placement stops at once on every gateway). */
  async drain(): Promise<void> {
    this.draining = true;
    await this.refresh();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.offSession();
    await this.chain.catch(() => undefined);
    const r = this.registration;
    this.registration = undefined;
    await r?.release().catch((err: unknown) => this.opts.log.warn({ err }, "chat server registry: release failed"));
  }

  private info(): Uint8Array {
    return encodeServerInfo({ address: this.opts.address, streams: this.opts.streams(), draining: this.draining });
  }

  private refresh(): Promise<void> {
    if (this.queued) return this.queued;
    const run = this.chain.then(() => {
      this.queued = undefined;
      return this.write();
    });
    this.queued = run;
    this.chain = run;
    return run;
  }

  private async write(): Promise<void> {
    if (this.closed) return;
    try {
      const data = this.info();
      const text = dec.decode(data);
      const path = `${this.opts.path}/${this.opts.id}`;
      if (!this.registration) {
        try {
          this.registration = await this.opts.coordinator.registerEphemeral(path, data);
        } catch (err) {
          // Our own node of a session that is about to expire: take it over once it goes.
          if ((err as { kind?: string }).kind !== "AlreadyExists") throw err;
          return;
        }
        this.written = text;
        this.opts.log.info({ id: this.opts.id, address: this.opts.address }, "chat server registered");
      } else if (text !== this.written) {
        await this.registration.update(data);
        this.written = text;
      }
    } catch (err) {
      if ((err as { kind?: string }).kind === "NotFound") this.registration = undefined;
      this.opts.log.debug({ err }, "chat server registry: refresh failed; retrying");
    }
  }
}
