/**
 * The Sync cursor and the settle horizon (services/chat/README.md "Ids and the Sync cursor").
 *
 * A cursor is (settled, tail): everything with id <= settled has been returned and can no longer
 * appear; tail is the largest unsettled id already returned. On the wire it is
 * base64url(version 1 | settled u64 BE | tail u64 BE): opaque to clients, versioned so the layout
 * can change, and strictly checked (anything else is INVALID_ARGUMENT "cursor").
 */
import { invalidArgument } from "../../../platform/errors.js";
import { SEQUENCE_BITS, SNOWFLAKE_EPOCH_MS, WORKER_BITS } from "../../tokenrange/snowflake.js";

export interface SyncCursor {
  readonly settled: bigint;
  readonly tail: bigint;
}

const VERSION = 1;
const BYTES = 17;
const SHIFT = BigInt(WORKER_BITS + SEQUENCE_BITS);
const MAX_U63 = 0x7fff_ffff_ffff_ffffn;

/** The smallest id that can be minted at Unix ms `t` (0n before the epoch). */
export function firstIdAt(t: number, epochMs = SNOWFLAKE_EPOCH_MS): bigint {
  const ms = Math.floor(t) - epochMs;
  return ms <= 0 ? 0n : BigInt(ms) << SHIFT;
}

/** Unix ms an id was minted at. */
export function idTimeMs(id: bigint, epochMs = SNOWFLAKE_EPOCH_MS): number {
  return Number(id >> SHIFT) + epochMs;
}

/**
 * Ids at or below the horizon have settled: every write lands within the settle window of its
 * id's time, so none of them can still appear.
 */
export function horizon(nowMs: number, settleWindowMs: number, epochMs = SNOWFLAKE_EPOCH_MS): bigint {
  return firstIdAt(nowMs - settleWindowMs, epochMs);
}

/**
 * An id minted before a write may only be used while the write still lands inside the settle
 * window: older than W - T (T = the write's timeout) when the write starts, it needs a new id.
 */
export function tooOldToWrite(id: bigint, nowMs: number, settleWindowMs: number, writeTimeoutMs: number): boolean {
  return nowMs - idTimeMs(id) > settleWindowMs - writeTimeoutMs;
}

export function encodeCursor(c: SyncCursor): string {
  const b = Buffer.alloc(BYTES);
  b.writeUInt8(VERSION, 0);
  b.writeBigUInt64BE(c.settled, 1);
  b.writeBigUInt64BE(c.tail, 9);
  return b.toString("base64url");
}

export function decodeCursor(s: string, field = "cursor"): SyncCursor {
  if (s.length > 64 || !/^[A-Za-z0-9_-]+$/.test(s)) throw invalidArgument(field, "is not a Sync cursor (pass next_cursor or ChatEvent.cursor unchanged)");
  const b = Buffer.from(s, "base64url");
  if (b.length !== BYTES || b.toString("base64url") !== s) throw invalidArgument(field, "is not a Sync cursor (pass next_cursor or ChatEvent.cursor unchanged)");
  if (b.readUInt8(0) !== VERSION) throw invalidArgument(field, "has an unknown version (call Sync with an empty cursor to start over)");
  const settled = b.readBigUInt64BE(1);
  const tail = b.readBigUInt64BE(9);
  if (settled > MAX_U63 || tail > MAX_U63) throw invalidArgument(field, "is not a Sync cursor");
  return { settled, tail };
}
