/**
 * Test-side chat clients through the gateway: one ChatService client per (user, protocol), and a
 * live device that collects what its Subscribe stream delivers. Shared by the chat end-to-end,
 * bad-input and slow-consumer tests; it knows only the public contract, never the service's
 * internals.
 */
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { Agent } from "node:http";
import { ChatService, type ChatEvent, type SyncResponse } from "../gen/switchboard/chat/v1/chat_pb.js";

export type ChatClient = Client<typeof ChatService>;
type EventCase = NonNullable<ChatEvent["event"]["case"]>;
type EventOf<K extends EventCase> = Extract<ChatEvent["event"], { case: K }>["value"];

/** Every way a client reaches the public port. */
export type Protocol = "connect-json-1.1" | "connect-1.1" | "connect-h2" | "grpc-web-1.1" | "grpc-web-h2" | "grpc";
export const PROTOCOLS: readonly Protocol[] = ["connect-json-1.1", "connect-1.1", "connect-h2", "grpc-web-1.1", "grpc-web-h2", "grpc"];

/** `agent`: the HTTP/1.1 connection pool (default: Node's global one, shared by every client). */
export function transportFor(protocol: Protocol, baseUrl: string, interceptors: Interceptor[] = [], agent?: Agent): Transport {
  const nodeOptions = agent ? { nodeOptions: { agent } } : {};
  switch (protocol) {
    case "connect-json-1.1":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors, ...nodeOptions });
    case "connect-1.1":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors, ...nodeOptions });
    case "connect-h2":
      return createConnectTransport({ baseUrl, httpVersion: "2", interceptors });
    case "grpc-web-1.1":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors, ...nodeOptions });
    case "grpc-web-h2":
      return createGrpcWebTransport({ baseUrl, httpVersion: "2", interceptors });
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors });
  }
}

/** Sets request headers on every call (credentials, or forged headers in hostile tests). */
export function withHeaders(headers: Readonly<Record<string, string>>): Interceptor {
  return (next) => (req) => {
    for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    return next(req);
  };
}

export function chatClient(baseUrl: string, protocol: Protocol, headers: Readonly<Record<string, string>> = {}, agent?: Agent): ChatClient {
  return createClient(ChatService, transportFor(protocol, baseUrl, [withHeaders(headers)], agent));
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A device holding one live Subscribe stream and everything it delivered, in arrival order. */
export class LiveDevice {
  readonly events: ChatEvent[] = [];
  /** How the stream ended: undefined while open. */
  end: ConnectError | "closed" | undefined;
  private readonly abort = new AbortController();

  constructor(
    readonly userId: string,
    readonly deviceId: string,
    readonly protocol: Protocol,
    /** Called on start: the target may not exist yet when the device is declared. */
    private readonly client: () => ChatClient,
  ) {}

  start(): this {
    void (async () => {
      try {
        for await (const res of this.client().subscribe({ deviceId: this.deviceId }, { signal: this.abort.signal })) {
          this.events.push(...res.events);
        }
        this.end = "closed";
      } catch (e) {
        this.end = ConnectError.from(e);
      }
    })();
    return this;
  }

  stop(): void {
    this.abort.abort();
  }

  /** Message ids delivered for a channel (or every channel), in arrival order, duplicates kept. */
  messageIds(channelId?: string): bigint[] {
    return this.events.flatMap((e) =>
      e.event.case === "message" && (channelId === undefined || e.event.value.channelId === channelId) ? [e.event.value.messageId] : [],
    );
  }

  of<K extends EventCase>(kind: K): EventOf<K>[] {
    const out: EventOf<K>[] = [];
    for (const e of this.events) if (e.event.case === kind) out.push(e.event.value as EventOf<K>);
    return out;
  }

  toString(): string {
    return `${this.userId}/${this.deviceId} (${this.protocol})`;
  }
}

export interface SyncResult {
  /** Deduped by event_id, in first-seen order. */
  readonly events: ChatEvent[];
  /** Every event as returned, duplicates included. */
  readonly raw: ChatEvent[];
  readonly cursor: string;
  readonly pages: number;
  readonly reset: boolean;
}

/** Syncs a device from a cursor to the end (loops while has_more), deduping by event_id as clients must. */
export async function syncAll(client: ChatClient, deviceId: string, cursor: string, pageSize = 0): Promise<SyncResult> {
  const raw: ChatEvent[] = [];
  let pages = 0;
  let reset = false;
  let res: SyncResponse;
  do {
    res = await client.sync({ deviceId, cursor, pageSize });
    pages++;
    reset ||= res.reset;
    raw.push(...res.events);
    cursor = res.nextCursor;
    if (pages > 10_000) throw new Error("Sync never ended: has_more stayed true for 10,000 pages");
  } while (res.hasMore);
  const seen = new Set<bigint>();
  const events = raw.filter((e) => {
    if (e.eventId === 0n) return true;
    if (seen.has(e.eventId)) return false;
    seen.add(e.eventId);
    return true;
  });
  return { events, raw, cursor, pages, reset };
}

/** Calls fn and returns the ConnectError it failed with (or undefined when it succeeded). */
export async function failure(fn: () => Promise<unknown>): Promise<ConnectError | undefined> {
  try {
    await fn();
    return undefined;
  } catch (e) {
    return ConnectError.from(e);
  }
}

export const codeName = (c: Code | undefined) => (c === undefined ? "OK" : Code[c]);

/**
 * A device as a real client runs it (the SDK behaviour the chat contract asks for): Subscribe
 * through a gateway, Sync from the saved cursor once the stream's first response says it is
 * attached, take live events, and when the stream ends for any reason reconnect with jittered
 * exponential backoff (full jitter: a server's clients do not come back in one wave) and Sync
 * again. Messages are kept by id, so whatever arrives twice (live and by Sync) counts once.
 */
export class ResumingDevice {
  /** Every message seen, by id. */
  readonly messages = new Map<bigint, { readonly channelId: string; readonly clientMessageId: string }>();
  cursor = "";
  liveMessages = 0;
  syncedMessages = 0;
  /** Streams that ended and were opened again. */
  reconnects = 0;
  /** How each stream ended (status code names), for the report. */
  readonly ends: string[] = [];
  /** When the current stream was attached (0 while not attached). */
  attachedAt = 0;
  private stopped = false;
  private abort: AbortController | undefined;
  private runner: Promise<void> | undefined;

  constructor(
    readonly userId: string,
    readonly deviceId: string,
    /** The client for an attempt: a real app would go through its load balancer; tests rotate gateways. */
    private readonly clientFor: (attempt: number) => ChatClient,
    private readonly backoff: { readonly minMs: number; readonly maxMs: number } = { minMs: 100, maxMs: 2_000 },
  ) {}

  start(): this {
    this.runner ??= this.run();
    return this;
  }

  /** One more Sync from the saved cursor (a final catch-up). */
  async sync(client: ChatClient = this.clientFor(0)): Promise<void> {
    const r = await syncAll(client, this.deviceId, this.cursor);
    for (const e of r.events) this.take(e, "sync");
    this.cursor = r.cursor;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    await this.runner;
  }

  private async run(): Promise<void> {
    let failures = 0;
    for (let attempt = 0; !this.stopped; attempt++) {
      const client = this.clientFor(attempt);
      this.abort = new AbortController();
      let attached = false;
      try {
        for await (const res of client.subscribe({ deviceId: this.deviceId }, { signal: this.abort.signal })) {
          if (!attached) {
            attached = true;
            await this.sync(client);
            this.attachedAt = Date.now();
            failures = 0;
          }
          for (const e of res.events) this.take(e, "live");
        }
        this.ends.push("closed");
      } catch (e) {
        this.ends.push(Code[ConnectError.from(e).code] ?? "unknown");
      }
      this.attachedAt = 0;
      if (this.stopped) return;
      this.reconnects++;
      failures++;
      const cap = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** failures);
      await new Promise((r) => setTimeout(r, Math.random() * cap));
    }
  }

  private take(e: ChatEvent, how: "live" | "sync"): void {
    if (e.event.case !== "message") return;
    const m = e.event.value;
    if (this.messages.has(m.messageId)) return;
    this.messages.set(m.messageId, { channelId: m.channelId, clientMessageId: m.clientMessageId });
    if (how === "live") this.liveMessages++;
    else this.syncedMessages++;
  }
}
