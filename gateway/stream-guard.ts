/**
 * Limits on the gateway's forwarded streaming calls (server streaming and bidi), whatever the
 * method: a stream holds memory and upstream work for as long as it is open, so
 *
 * - each identity may hold at most `maxPerIdentity` of them at once on this gateway (beyond:
 *   ResourceExhausted, before anything is sent upstream), and
 * - a stream ends with Unauthenticated when the credentials that opened it expire
 *   (Identity.expiresAtMs, a JWT's exp): a token valid for minutes must not buy a stream
 *   that lasts for days.
 *
 * Calls without an identity (public methods) are not counted here; the per-connection and
 * per-address budgets bound those.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { RETRY_AFTER_MS_HEADER } from "../platform/grpc/status.js";
import { atRandomMoments } from "../platform/spread.js";
import type { Identity } from "../platform/identity.js";

export interface StreamGuardOptions {
  readonly maxPerIdentity: number;
  readonly now?: () => number;
}

/** setTimeout fires at once for delays above 2^31-1 ms (about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

/** A stream the guard admitted: stopped (once) with the reason when the token expires or the gateway drains. */
interface Lease {
  stop(reason: ConnectError): void;
}

export class StreamGuard {
  private readonly open = new Map<string, number>();
  /** Every stream running now. */
  private readonly running = new Set<Lease>();
  private draining = false;
  private readonly now: () => number;

  constructor(private readonly opts: StreamGuardOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Streams open now for this user id (tests, metrics). */
  openFor(userId: string): number {
    return this.open.get(userId) ?? 0;
  }

  /**
   * Runs one stream for `identity`: `start(signal)` opens the upstream call, which must stop
   * when `signal` aborts. Throws ResourceExhausted when the identity is at its cap, and
   * Unauthenticated ("token expired") once its credentials expire.
   */
  async *run<T>(identity: Identity | undefined, callerSignal: AbortSignal, start: (signal: AbortSignal) => AsyncIterable<T>): AsyncGenerator<T> {
    const stop = new AbortController();
    const release = this.admit(identity, (reason) => stop.abort(reason));
    const ended = (): ConnectError | undefined => (stop.signal.aborted ? (stop.signal.reason as ConnectError) : undefined);
    try {
      const signal = AbortSignal.any([callerSignal, stop.signal]);
      try {
        for await (const msg of start(signal)) {
          if (ended()) break;
          yield msg;
        }
      } catch (e) {
        // The upstream reports our own abort as Canceled; the caller needs the reason.
        throw ended() ?? e;
      }
      const reason = ended();
      if (reason) throw reason;
    } finally {
      release();
    }
  }

  /**
   * Admits one stream for `identity` without wrapping it (the subscribe door, which holds no
   * generator per stream): `stop` is called at most once, with the error to end the stream with,
   * when its credentials expire or the gateway drains. Throws like run(); the returned function
   * releases the stream's place (idempotent) and must be called when it ends for any reason.
   */
  admit(identity: Identity | undefined, stop: (reason: ConnectError) => void): () => void {
    if (this.draining) throw gatewayDraining(0);
    const expiresAtMs = identity?.expiresAtMs;
    if (expiresAtMs !== undefined && expiresAtMs <= this.now()) throw tokenExpired(expiresAtMs);
    const releasePlace = this.acquire(identity);
    let timer: NodeJS.Timeout | undefined;
    const lease: Lease = {
      stop: (reason) => {
        if (!this.running.delete(lease)) return;
        stop(reason);
      },
    };
    this.running.add(lease);
    if (expiresAtMs !== undefined) {
      const arm = (): void => {
        const left = expiresAtMs - this.now();
        if (left <= 0) return lease.stop(tokenExpired(expiresAtMs));
        timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        timer.unref();
      };
      arm();
    }
    return () => {
      this.running.delete(lease);
      clearTimeout(timer);
      releasePlace();
    };
  }

  /**
   * The gateway is stopping: no new stream starts, and every open one ends at a random moment of
   * `windowMs` with UNAVAILABLE and a retry hint, so its clients reconnect (to another gateway)
   * spread out rather than in one wave, instead of the shutdown waiting out its grace period on
   * streams that never end by themselves. Resolves when every stream was told.
   */
  async drain(windowMs: number): Promise<void> {
    this.draining = true;
    await atRandomMoments(this.running, windowMs, (lease, retryAfterMs) => lease.stop(gatewayDraining(retryAfterMs)));
  }

  /** Streams running now (tests, metrics). */
  get size(): number {
    return this.running.size;
  }

  private acquire(identity: Identity | undefined): () => void {
    if (identity === undefined) return () => {};
    const key = identity.userId;
    const count = this.open.get(key) ?? 0;
    if (count >= this.opts.maxPerIdentity) {
      throw new ConnectError(
        `too many open streams for this identity: at most ${this.opts.maxPerIdentity} at once per gateway; close one first`,
        Code.ResourceExhausted,
      );
    }
    this.open.set(key, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left <= 0) this.open.delete(key);
      else this.open.set(key, left);
    };
  }
}

function gatewayDraining(retryAfterMs: number): ConnectError {
  return new ConnectError(
    "gateway is shutting down: reconnect (with backoff) and Sync from your cursor",
    Code.Unavailable,
    { [RETRY_AFTER_MS_HEADER]: String(retryAfterMs) },
  );
}

function tokenExpired(expiresAtMs: number): ConnectError {
  return new ConnectError(
    `token expired at ${new Date(expiresAtMs).toISOString()}: the stream ended with the credentials that opened it; reconnect with a fresh token`,
    Code.Unauthenticated,
  );
}
