/**
 * SendClaims through a short lock in the shared cache (Redis on the cluster engine) instead of a
 * Cassandra lightweight transaction per send: the LWT (Paxos: four round trips with their reads
 * and writes) cost the database ~5 ms of CPU per message on the reference box and capped sends
 * there (bench/chat-send.ts). A client message id is sent again only by a retry, and two sends
 * of one id race only while the first is still in flight, so a lock that outlives any in-flight
 * send is enough to serialize them; the database keeps the record for the claim's 25 h.
 *
 * claim(message):
 * 1. `setIfAbsent(lock key, LOCK_TTL)`, the claim row read at the same time (any holder's row
 *    landed by LOCK_SAFE, long before its lock expires, so a read issued with a successful lock
 *    request sees it). The holder looks at the claim row: present -> an earlier
 *    send of this id (its lock long gone) -> that message. Absent -> writes its claim row
 *    (plain write, stamped with the lock time) and has claimed, if all that took under
 *    LOCK_SAFE; a holder slower than that answers UNAVAILABLE (retry) without claiming, since
 *    its lock may have expired and been taken by another send.
 * 2. Not the holder: another send of this id is in flight; its claim row lands within LOCK_SAFE,
 *    so the claim row is polled until then (then UNAVAILABLE: retry).
 * 3. Cache unreachable: the store's atomic claim (the LWT), so sends go on without Redis.
 *
 * Why a slow holder cannot produce a second message: it reports claimed only when its claim row
 * landed within LOCK_SAFE of taking the lock, i.e. while the lock was certainly its own, so a
 * later holder reads that row. A slow holder's late row (it answered UNAVAILABLE, stored no
 * message) is stamped with its earlier lock time and loses to the later holder's row by
 * last-write-wins, whatever order they land in (clocks within LOCK_TTL - LOCK_SAFE of each other).
 *
 * What it does not cover: a cache failover that loses the lock while two sends of one id are in
 * flight, and a send that takes the LWT path (cache unreachable from its server) racing one that
 * holds the lock (reachable from another): either can store the message twice. Both need a retry
 * racing its own first attempt at the moment of a cache failure.
 */
import { DomainError } from "../../../platform/errors.js";
import type { Cache } from "../../../platform/ports/cache.js";
import type { ChatStore, ClaimResult, MessageRecord, SendClaims } from "../ports.js";

export const LOCK_TTL_MS = 30_000;
export const LOCK_SAFE_MS = 10_000;
const POLL_MS = 20;
const MAX_POLL_MS = 500;

export interface LockedClaimsOptions {
  /** Scopes the lock keys (one mesh's keyspace: meshes may share a cache). */
  readonly keyspace: string;
  /** Wall clock, Unix ms (claim rows are stamped with it). */
  readonly now?: () => number;
  readonly onCacheDown?: (err: unknown) => void;
}

export class LockedClaims implements SendClaims {
  private readonly now: () => number;

  constructor(
    private readonly store: ChatStore,
    private readonly cache: Cache,
    private readonly opts: LockedClaimsOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  async claim(message: MessageRecord): Promise<ClaimResult> {
    const lockedAt = this.now();
    // The claim row is read alongside the lock: one round trip less on every send (a send
    // serializes its steps, and a Session its sends).
    const earlier = this.find(message);
    earlier.catch(() => {});
    let holder: boolean;
    try {
      holder = await this.cache.setIfAbsent(this.lockKey(message), String(message.id), LOCK_TTL_MS);
    } catch (err) {
      this.opts.onCacheDown?.(err);
      return this.store.claimClientMessageId(message);
    }
    if (holder) return this.claimAsHolder(message, lockedAt, await earlier);
    return this.awaitHolder(message, lockedAt);
  }

  private async claimAsHolder(message: MessageRecord, lockedAt: number, earlier: MessageRecord | undefined): Promise<ClaimResult> {
    if (earlier) return { claimed: false, existing: earlier };
    await this.store.recordClaim(message, BigInt(lockedAt) * 1000n);
    if (this.now() - lockedAt >= LOCK_SAFE_MS) throw contended(message);
    return { claimed: true };
  }

  private async awaitHolder(message: MessageRecord, lockedAt: number): Promise<ClaimResult> {
    // Backing off: a holder stalled behind a slow database must not draw a read every 20 ms from
    // each send waiting on it (at most ~25 reads each over LOCK_SAFE).
    for (let pause = POLL_MS; ; pause = Math.min(pause * 2, MAX_POLL_MS)) {
      const theirs = await this.find(message);
      if (theirs) return { claimed: false, existing: theirs };
      if (this.now() - lockedAt >= LOCK_SAFE_MS) throw contended(message);
      await new Promise((r) => setTimeout(r, pause));
    }
  }

  private find(m: MessageRecord): Promise<MessageRecord | undefined> {
    return this.store.findClaim(m.channelId, m.senderId, m.clientMessageId);
  }

  private lockKey(m: MessageRecord): string {
    // Channel ids have no ':'; user ids may, so the sender's length keeps two users' keys apart.
    return `chat:send-lock:${this.opts.keyspace}:${m.channelId}:${m.senderId.length}:${m.senderId}:${m.clientMessageId}`;
  }
}

function contended(m: MessageRecord): DomainError {
  return new DomainError("Unavailable", `client_message_id ${m.clientMessageId} is being sent by another request; retry`, { retryAfterMs: 1_000 });
}
