/**
 * In-process worker ids for time-sortable ids: claims an ephemeral znode from a bounded pool
 * (default 1,024 = 10 worker bits) directly on a Coordinator.
 *
 * - `current()` is the claim to mint with, or undefined while minting must stop:
 *   session "disconnected" (the session may expire server-side before we hear about it, and
 *   another process may then claim our id) or "expired" (the id is gone). After an expiry the
 *   claimer claims a new id (possibly a different one) as soon as the new session connects;
 *   each new claim has a new `epoch` so a generator resets its state.
 * - `notBeforeMs`: the generator must not mint ids at or before this time (the previous
 *   holder's high-water mark: see domain/worker-pool.ts).
 * - Every `recordIntervalMs` the last issued time is recorded with
 *   reservedUntil = now + 2 x interval; `release()` records the final time and frees the id.
 */
import { DomainError } from "../../platform/errors.js";
import type { Coordinator, Registration } from "../../platform/ports/coordinator.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { silentLog } from "../../platform/engines/log.js";
import { DEFAULT_ROOT } from "./domain/range-allocator.js";
import { validateNamespace } from "./domain/namespace.js";
import { DEFAULT_MAX_WORKERS, WorkerPool, notBefore } from "./domain/worker-pool.js";

export interface WorkerClaim {
  readonly workerId: number;
  /** Mint only at times > notBeforeMs (ms since the Unix epoch). */
  readonly notBeforeMs: number;
  /** Changes with every new claim. */
  readonly epoch: number;
}

/** What a SnowflakeGenerator needs from a worker-id holder. */
export interface WorkerIdSource {
  current(): WorkerClaim | undefined;
  /** Told the time (Unix ms) of ids minted, for the high-water mark. Optional. */
  observe?(timeMs: number): void;
}

/** A fixed worker id (tests, single-process setups). */
export function fixedWorkerId(workerId: number, notBeforeMs = 0): WorkerIdSource {
  const claim: WorkerClaim = { workerId, notBeforeMs, epoch: 1 };
  return { current: () => claim };
}

export interface ZkWorkerIdOptions {
  readonly namespace: string;
  /** e.g. "chat-2@host:pid" */
  readonly instanceId: string;
  readonly maxWorkers?: number;
  readonly root?: string;
  readonly recordIntervalMs?: number;
  readonly log?: EngineLog;
  readonly now?: () => number;
}

export class ZkWorkerId implements WorkerIdSource {
  private claim: WorkerClaim | undefined;
  private registration: Registration | undefined;
  private suspended = false;
  private closed = false;
  private epoch = 0;
  private lastIssued = 0;
  private timer: NodeJS.Timeout | undefined;
  private reclaiming: Promise<void> | undefined;
  private readonly pool: WorkerPool;
  private readonly off: () => void;
  private readonly log: EngineLog;
  private readonly now: () => number;
  private readonly intervalMs: number;

  private constructor(
    private readonly coordinator: Coordinator,
    private readonly options: ZkWorkerIdOptions,
  ) {
    validateNamespace(options.namespace);
    this.pool = new WorkerPool(coordinator, options.root ?? DEFAULT_ROOT, options.maxWorkers ?? DEFAULT_MAX_WORKERS);
    this.log = (options.log ?? silentLog).child({ component: "worker-id", namespace: options.namespace });
    this.now = options.now ?? Date.now;
    this.intervalMs = options.recordIntervalMs ?? 1_000;
    this.off = coordinator.onSessionState((s) => this.onState(s));
  }

  /** Claims a worker id (throws Unavailable/ResourceExhausted when it cannot). */
  static async claim(coordinator: Coordinator, options: ZkWorkerIdOptions): Promise<ZkWorkerId> {
    const w = new ZkWorkerId(coordinator, options);
    try {
      await w.claimOnce();
    } catch (e) {
      w.off();
      throw e;
    }
    w.timer = setInterval(() => void w.record().catch(() => {}), w.intervalMs);
    w.timer.unref();
    return w;
  }

  current(): WorkerClaim | undefined {
    if (this.suspended || this.closed || this.coordinator.sessionState !== "connected") return undefined;
    return this.claim;
  }

  observe(timeMs: number): void {
    if (timeMs > this.lastIssued) this.lastIssued = timeMs;
  }

  /** Records the final time and frees the id; current() is undefined afterwards. */
  async release(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.off();
    if (this.timer) clearInterval(this.timer);
    const c = this.claim;
    const reg = this.registration;
    this.claim = undefined;
    this.registration = undefined;
    if (!c || !reg) return;
    const last = Math.max(this.lastIssued, this.now());
    try {
      await this.pool.recordClock(this.options.namespace, c.workerId, () => ({ lastTime: last, reservedUntil: last, released: true }));
      await reg.release();
    } catch (err) {
      this.log.warn({ err }, "worker id release failed; it is freed when the session ends");
    }
  }

  private async claimOnce(): Promise<void> {
    const now = this.now();
    const r = await this.pool.claim(this.options.namespace, { instanceId: this.options.instanceId }, now);
    // Reserve ahead before minting: a holder that dies without recording leaves this mark.
    const mark = await this.pool.recordClock(this.options.namespace, r.workerId, (prev) => ({
      lastTime: prev?.lastTime ?? 0,
      reservedUntil: Math.max(prev?.reservedUntil ?? 0, now + 2 * this.intervalMs),
      released: false,
    }));
    void mark;
    this.registration = r.registration;
    this.claim = { workerId: r.workerId, notBeforeMs: notBefore(r.mark), epoch: ++this.epoch };
    this.suspended = false;
    this.log.info({ workerId: r.workerId, notBeforeMs: this.claim.notBeforeMs }, "worker id claimed");
  }

  private async record(): Promise<void> {
    const c = this.current();
    if (!c) return;
    const now = this.now();
    await this.pool.recordClock(this.options.namespace, c.workerId, () => ({
      lastTime: this.lastIssued,
      reservedUntil: now + 2 * this.intervalMs,
      released: false,
    }));
  }

  private onState(s: "connected" | "disconnected" | "expired"): void {
    if (this.closed) return;
    if (s === "disconnected") {
      this.suspended = true;
    } else if (s === "expired") {
      this.log.warn({ workerId: this.claim?.workerId }, "session expired: worker id lost; minting stops until a new one is claimed");
      this.claim = undefined;
      this.registration = undefined;
      this.suspended = true;
    } else if (s === "connected") {
      if (this.claim) this.suspended = false;
      else this.reclaim();
    }
  }

  private reclaim(): void {
    if (this.reclaiming || this.closed) return;
    this.reclaiming = (async () => {
      for (let delay = 100; !this.closed && !this.claim; delay = Math.min(delay * 2, 5_000)) {
        try {
          await this.claimOnce();
        } catch (err) {
          this.log.warn({ err }, "worker id re-claim failed; retrying");
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    })().finally(() => (this.reclaiming = undefined));
  }
}

export const noWorkerId = (): DomainError =>
  new DomainError("Unavailable", "no worker id held (session lost); ids resume once a worker id is re-claimed", { retryAfterMs: 500 });
