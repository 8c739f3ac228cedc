/**
 * IdMinter over the token-range service: a worker id leased with AcquireWorkerId and kept with
 * RenewWorkerId, fed to a SnowflakeGenerator.
 *
 * Why minting is safe while the lease is held: token-range raises the worker's reservation to
 * the lease's expire_time before answering, and whoever gets the id next mints only at times
 * after that reservation (its notBefore). So an id we mint with a timestamp below our
 * expire_time can never collide with the next holder's, even if our clock and the service's
 * disagree about *when* that is. Hence the rule: mint only while `now < expire_time - margin`
 * (the margin covers the gap between checking and reading the clock inside the generator, and
 * modest skew). No renewal in time (token-range down, network cut) -> minting stops by itself
 * before the lease can pass to anyone else.
 *
 * - NOT_FOUND on renew: the lease is gone (expired, released): stop at once, acquire a new one.
 * - FAILED_PRECONDITION on renew: our clock went backwards past what we reported; stop until a
 *   renewal succeeds again (or the lease lapses and a new one is acquired, whose notBefore keeps
 *   us from reusing times).
 * - A new lease starts a new generator epoch, honouring last_time (the highest time ever
 *   reported for that worker id) as notBefore.
 * - A clock step backwards inside the generator (it refuses rather than waits) surfaces as
 *   Unavailable too: for a caller it is a server-side condition that clears with time.
 *
 * Startup (the chat service must start while token-range is still starting): the promise
 * resolves as soon as the first lease is held, or after `startupWaitMs` (default 3 s) with a
 * minter whose next() throws Unavailable until acquisition, retried with backoff in the
 * background, succeeds. Only a configuration mistake (InvalidArgument: bad namespace or
 * instance id) rejects it.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AcquireWorkerIdRequestSchema, TokenRangeService } from "../../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import { DomainError, isDomainError } from "../../../platform/errors.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { createGrpcClient, type GrpcClient } from "../../../platform/grpc/client.js";
import { SnowflakeGenerator } from "../../tokenrange/snowflake.js";
import type { WorkerClaim, WorkerIdSource } from "../../tokenrange/worker-id.js";
import type { IdMinter } from "../ports.js";

export interface TokenRangeMinterOptions {
  /** "host:port" of TokenRangeService. */
  readonly target: string;
  /** This process, e.g. "chat@host:pid" (a retried acquire by the same instance gets its lease back). */
  readonly instanceId: string;
  readonly log: EngineLog;
  /** Id namespace (default "chat"). */
  readonly namespace?: string;
  /** Requested lease length (default 30 s; the service clamps it to [5 s, 10 min]). */
  readonly ttlMs?: number;
  /** Wall clock in Unix ms (default Date.now): ids, client_time and the lease deadline. */
  readonly now?: () => number;
  /** Stop minting this long before expire_time (default min(2 s, ttl / 5)). */
  readonly safetyMarginMs?: number;
  /** How long the promise waits for the first lease before resolving anyway (default 3 s). */
  readonly startupWaitMs?: number;
  /** Per-call timeout of the lease calls (default 2 s). */
  readonly callTimeoutMs?: number;
  /** Backoff between failed acquisitions / renewals (default 100 ms doubling to 2 s). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

export interface LeaseState {
  readonly workerId: number;
  readonly leaseId: string;
  /** Server time at which the lease expires unless renewed (Unix ms). */
  readonly expireAtMs: number;
  /** Minting stops at this time of our clock. */
  readonly mintUntilMs: number;
}

export interface TokenRangeIdMinter extends IdMinter {
  /** The lease held (also while minting is paused by a clock rollback), for metrics and tests. */
  lease(): LeaseState | undefined;
  /** Why next() would throw right now, or undefined when it can mint. */
  pausedReason(): string | undefined;
  close(): Promise<void>;
}

const DEFAULT_TTL_MS = 30_000;

interface Lease {
  readonly workerId: number;
  readonly leaseId: string;
  expireAtMs: number;
  renewIntervalMs: number;
  readonly claim: WorkerClaim;
}

/** The lease holder: a WorkerIdSource whose claim exists only while minting is safe. */
class LeasedWorkerId implements WorkerIdSource {
  private held: Lease | undefined;
  private epoch = 0;
  private lastMinted = 0;
  private rollback: string | undefined;
  private closed = false;
  /** Set by a configuration mistake (InvalidArgument): the loop ends, next() keeps failing. */
  private stopped = false;
  private lastError = "no worker id lease acquired yet (token-range not reached)";
  private firstLease!: () => void;
  readonly leased = new Promise<void>((r) => (this.firstLease = r));
  private readonly client: GrpcClient<typeof TokenRangeService>;
  private readonly abort = new AbortController();
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly ns: string;
  private readonly ttlMs: number;
  private readonly marginMs: number;
  private readonly now: () => number;
  private readonly log: EngineLog;

  constructor(private readonly opts: TokenRangeMinterOptions) {
    this.ns = opts.namespace ?? "chat";
    this.ttlMs = opts.ttlMs ?? DEFAULT_TTL_MS;
    this.marginMs = opts.safetyMarginMs ?? Math.min(2_000, Math.floor(this.ttlMs / 5));
    this.now = opts.now ?? Date.now;
    this.log = opts.log.child({ component: "token-range-minter", namespace: this.ns });
    this.client = createGrpcClient(TokenRangeService, opts.target, { defaultTimeoutMs: opts.callTimeoutMs ?? 2_000 });
  }

  current(): WorkerClaim | undefined {
    return this.pausedReason() === undefined ? this.held?.claim : undefined;
  }

  observe(timeMs: number): void {
    if (timeMs > this.lastMinted) this.lastMinted = timeMs;
  }

  pausedReason(): string | undefined {
    if (this.closed) return "the id minter is closed";
    const h = this.held;
    if (!h) return this.lastError;
    if (this.rollback) return this.rollback;
    if (this.now() >= this.mintUntil(h)) return `worker id lease ${h.workerId} not renewed in time (${this.lastError})`;
    return undefined;
  }

  lease(): LeaseState | undefined {
    const h = this.held;
    return h && { workerId: h.workerId, leaseId: h.leaseId, expireAtMs: h.expireAtMs, mintUntilMs: this.mintUntil(h) };
  }

  /** First acquisition; InvalidArgument (a configuration mistake) rejects, anything else retries in the background. */
  async start(startupWaitMs: number): Promise<void> {
    const fatal = new Promise<never>((_, reject) => (this.fatal = reject));
    fatal.catch(() => {}); // a later configuration error is reported by next(), not as an unhandled rejection
    this.loop = this.run();
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((r) => {
      timer = setTimeout(r, startupWaitMs);
      timer.unref();
    });
    try {
      await Promise.race([this.leased, waited, fatal]);
    } catch (e) {
      await this.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    if (!this.held) this.log.warn({ target: this.opts.target, reason: this.lastError }, "no worker id lease yet: ids are Unavailable until token-range answers");
  }

  private fatal: (e: unknown) => void = () => {};

  /** Releases the lease. An acquisition cut short here may leave a lease that lapses at its TTL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.wake?.();
    await this.loop;
    const h = this.held;
    this.held = undefined;
    try {
      if (h) {
        await this.client.releaseWorkerId({
          namespace: this.ns,
          workerId: h.workerId,
          leaseId: h.leaseId,
          lastTime: timestampFromMs(Math.max(this.lastMinted, this.now())),
        });
        this.log.info({ workerId: h.workerId }, "worker id released");
      }
    } catch (err) {
      this.log.warn({ err, workerId: h?.workerId }, "worker id release failed; the lease lapses at its expire time");
    } finally {
      this.client.close();
    }
  }

  /** The one loop that acquires and renews, so lease state changes in one place. */
  private async run(): Promise<void> {
    const min = this.opts.retryMinMs ?? 100;
    const max = this.opts.retryMaxMs ?? 2_000;
    let backoff = min;
    while (!this.closed && !this.stopped) {
      const outcome = this.held ? await this.renew() : (await this.acquire()) ? "ok" : "retry";
      let delay: number;
      if (outcome === "retry") {
        // A failed renewal retries quickly (never later than the renew interval): each try is a
        // chance to keep minting without a gap.
        delay = Math.min(backoff, this.held?.renewIntervalMs ?? backoff);
        backoff = Math.min(backoff * 2, max);
      } else {
        delay = outcome === "lost" ? 0 : this.held!.renewIntervalMs;
        backoff = min;
      }
      if (delay > 0) await this.sleep(delay);
    }
  }

  private async acquire(): Promise<boolean> {
    const sentAt = this.now();
    try {
      const r = await this.client.acquireWorkerId(
        create(AcquireWorkerIdRequestSchema, {
          namespace: this.ns,
          instanceId: this.opts.instanceId,
          ttl: durationFromMs(this.ttlMs),
          clientTime: timestampFromMs(sentAt),
        }),
        { signal: this.abort.signal },
      );
      if (this.closed) return false;
      const notBeforeMs = r.lastTime ? timestampMs(r.lastTime) : 0;
      this.held = {
        workerId: r.workerId,
        leaseId: r.leaseId,
        expireAtMs: r.expireTime ? timestampMs(r.expireTime) : sentAt,
        renewIntervalMs: Math.max(r.renewInterval ? durationMs(r.renewInterval) : Math.floor(this.ttlMs / 3), 50),
        claim: { workerId: r.workerId, notBeforeMs, epoch: ++this.epoch },
      };
      this.rollback = undefined;
      const lease = this.lease()!;
      if (lease.mintUntilMs <= this.now()) {
        this.log.warn({ workerId: r.workerId, expireAtMs: lease.expireAtMs, nowMs: this.now() }, "leased worker id already expires by our clock: clock skew with token-range?");
      }
      this.log.info({ workerId: r.workerId, notBeforeMs, expireAtMs: lease.expireAtMs }, "worker id leased");
      this.firstLease();
      return true;
    } catch (e) {
      const ce = ConnectError.from(e);
      this.lastError = `token-range AcquireWorkerId failed: ${Code[ce.code]}: ${ce.rawMessage}`;
      if (ce.code === Code.InvalidArgument) {
        // A configuration mistake: retrying cannot fix it.
        this.stopped = true;
        this.fatal(new DomainError("InvalidArgument", this.lastError, {}, { cause: e }));
      } else if (!this.closed) {
        this.log.warn({ code: Code[ce.code], reason: ce.rawMessage }, "worker id acquisition failed; retrying");
      }
      return false;
    }
  }

  private async renew(): Promise<"ok" | "lost" | "retry"> {
    const h = this.held!;
    const clientTime = this.now();
    try {
      const r = await this.client.renewWorkerId(
        { namespace: this.ns, workerId: h.workerId, leaseId: h.leaseId, clientTime: timestampFromMs(clientTime) },
        { signal: this.abort.signal },
      );
      if (r.expireTime) h.expireAtMs = timestampMs(r.expireTime);
      if (this.rollback) this.log.info({ workerId: h.workerId }, "clock caught up: minting resumes");
      this.rollback = undefined;
      return "ok";
    } catch (e) {
      if (this.closed) return "retry";
      const ce = ConnectError.from(e);
      this.lastError = `token-range RenewWorkerId failed: ${Code[ce.code]}: ${ce.rawMessage}`;
      if (ce.code === Code.NotFound) {
        // The lease may already belong to someone else: not one more id with this worker id.
        this.held = undefined;
        this.log.warn({ workerId: h.workerId, reason: ce.rawMessage }, "worker id lease lost: minting stopped; acquiring a new one");
        return "lost";
      }
      if (ce.code === Code.FailedPrecondition) {
        this.rollback = `clock went backwards (token-range: ${ce.rawMessage}); ids resume when it catches up`;
        this.log.error({ workerId: h.workerId, reason: ce.rawMessage }, "clock went backwards: minting stopped");
        return "retry";
      }
      this.log.warn({ workerId: h.workerId, code: Code[ce.code], reason: ce.rawMessage, mintUntilMs: this.mintUntil(h) }, "worker id renewal failed; retrying");
      return "retry";
    }
  }

  private mintUntil(h: Lease): number {
    return h.expireAtMs - this.marginMs;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      t.unref();
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }
}

export async function tokenRangeIdMinter(opts: TokenRangeMinterOptions): Promise<TokenRangeIdMinter> {
  const worker = new LeasedWorkerId(opts);
  await worker.start(opts.startupWaitMs ?? 3_000);
  // The generator reads the same clock the lease deadline is judged by.
  const generator = new SnowflakeGenerator({ worker, ...(opts.now ? { now: opts.now } : {}) });
  return {
    next() {
      const paused = worker.pausedReason();
      if (paused !== undefined) throw new DomainError("Unavailable", `cannot mint ids: ${paused}`, { retryAfterMs: 500 });
      try {
        return generator.next();
      } catch (e) {
        if (isDomainError(e) && (e.kind === "FailedPrecondition" || e.kind === "Unavailable")) {
          throw new DomainError("Unavailable", `cannot mint ids: ${e.message}`, { retryAfterMs: e.details.retryAfterMs ?? 500 }, { cause: e });
        }
        throw e;
      }
    },
    lease: () => worker.lease(),
    pausedReason: () => worker.pausedReason(),
    close: () => worker.close(),
  };
}
