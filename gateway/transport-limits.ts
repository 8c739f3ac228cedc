/**
 * Limits of the public edge's transport: how many connections and HTTP/2 streams it holds,
 * per remote address and in total, and how long a connection may stay without doing useful
 * work. They bound the memory an unauthenticated client can make the gateway spend, whatever
 * mix of connections, addresses and protocols it uses; the defaults still leave room for tens
 * of thousands of long-lived subscribers spread over many addresses.
 */
import { isIPv4 } from "node:net";
import type { GatewayLimits } from "../platform/config.js";
import { ipBucket } from "./rate-limit.js";

/** The port's connection and stream budgets and deadlines (documented on GatewayLimits). */
export type TransportLimits = Omit<GatewayLimits, "http1HeadersTimeoutMs" | "http1RequestTimeoutMs">;

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  firstBytesTimeoutMs: 10_000,
  h2IdleTimeoutMs: 120_000,
  h2MaxStreamsPerConnection: 100,
  h2MaxSessionMemoryMb: 4,
  maxHeaderBytes: 16 * 1024,
  maxConnections: 20_000,
  maxConnectionsPerAddress: 256,
  maxStreams: 30_000,
  maxStreamsPerAddress: 2_000,
};

/** Why a connection or stream was refused or closed; the label of the refusal metric. */
export type RefusalReason =
  | "total_connections"
  | "address_connections"
  | "total_streams"
  | "address_streams"
  | "first_bytes_deadline"
  | "h2_idle"
  | "refused_stream_flood"
  /** Not a limit: a TLS handshake that failed (plaintext client, no common version, untrusted certificate). */
  | "tls_handshake";

export interface TransportEvents {
  /** A connection ("connection") or stream ("stream") refused or closed by a limit (or a failed TLS handshake). */
  onRefused?(what: "connection" | "stream", reason: RefusalReason): void;
}

/**
 * Who a budget is charged to: IPv4 by address (also when it arrives IPv4-mapped on a dual
 * stack socket), IPv6 by /64, since one host usually owns a whole /64.
 */
export function addressKey(remoteAddress: string | undefined): string {
  if (!remoteAddress) return "unknown";
  const lower = remoteAddress.toLowerCase();
  if (lower.startsWith("::ffff:") && isIPv4(lower.slice(7))) return lower.slice(7);
  return ipBucket(remoteAddress);
}

/** Counts of something held (connections, streams) in total and per key, against two caps. */
export class Budget {
  private readonly perKey = new Map<string, number>();
  private count = 0;

  constructor(
    private readonly maxTotal: number,
    /** 0 = no per-key cap. */
    private readonly maxPerKey: number,
  ) {}

  /** Takes one unit for `key`, or says which cap refuses it (nothing is taken then). */
  take(key: string): "total" | "address" | undefined {
    if (this.count >= this.maxTotal) return "total";
    const held = this.perKey.get(key) ?? 0;
    if (this.maxPerKey > 0 && held >= this.maxPerKey) return "address";
    this.perKey.set(key, held + 1);
    this.count += 1;
    return undefined;
  }

  release(key: string): void {
    const held = this.perKey.get(key);
    if (held === undefined) return;
    if (held <= 1) this.perKey.delete(key);
    else this.perKey.set(key, held - 1);
    this.count -= 1;
  }

  get total(): number {
    return this.count;
  }

  of(key: string): number {
    return this.perKey.get(key) ?? 0;
  }
}
