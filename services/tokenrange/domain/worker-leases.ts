/**
 * Worker-id leases for remote callers (TokenRangeService AcquireWorkerId / RenewWorkerId /
 * ReleaseWorkerId). The service process holds the ephemeral `ids/<n>` node on its own session
 * (see worker-pool.ts); the node's data carries the lease (leaseId, instanceId, expireAt).
 *
 * - Acquire: a live lease of the same instance_id held by this process is returned (extended);
 *   otherwise a free id is claimed. The clock mark's reservedUntil is raised to the lease expiry
 *   BEFORE answering, so whoever gets this id next mints only after the time this holder may
 *   mint until (even if this service crashes). last_time in the answer = the previous mark.
 * - Renew: NotFound unless the node holds this lease and it has not expired; FailedPrecondition
 *   when client_time < the recorded lastTime (clock went backwards). Records client_time and
 *   the new reservation, then extends expireAt (versioned write).
 * - Release: records last_time as a clean release and frees the id. Idempotent.
 * - A sweep (every second) frees expired leases held by this process.
 */
import { DomainError, invalidArgument, notFound } from "../../../platform/errors.js";
import type { Coordinator, Registration } from "../../../platform/ports/coordinator.js";
import { validateNamespace } from "./namespace.js";
import { DEFAULT_MAX_WORKERS, WorkerPool, notBefore } from "./worker-pool.js";

export const DEFAULT_TTL_MS = 30_000;
export const MIN_TTL_MS = 5_000;
export const MAX_TTL_MS = 10 * 60_000;

export interface WorkerLease {
  readonly workerId: number;
  readonly leaseId: string;
  readonly expireAt: number;
  /** Previous holders' high-water mark (Unix ms), undefined when never used. */
  readonly lastTime: number | undefined;
  readonly maxWorkers: number;
  readonly renewIntervalMs: number;
}

interface Held {
  readonly ns: string;
  readonly workerId: number;
  readonly leaseId: string;
  readonly instanceId: string;
  readonly ttlMs: number;
  readonly registration: Registration;
  lastTime: number | undefined;
}

const INSTANCE_RE = /^[\x20-\x7e]{1,128}$/;

export class WorkerLeaseRegistry {
  private readonly pool: WorkerPool;
  private readonly held = new Map<string, Held>(); // key: ns/leaseId
  private readonly timer: NodeJS.Timeout;

  constructor(
    coordinator: Coordinator,
    root: string,
    private readonly now: () => number = Date.now,
    maxWorkers = DEFAULT_MAX_WORKERS,
  ) {
    this.pool = new WorkerPool(coordinator, root, maxWorkers);
    this.timer = setInterval(() => void this.sweep().catch(() => {}), 1_000);
    this.timer.unref();
  }

  activeCount(ns: string): Promise<number> {
    return this.pool.activeCount(ns);
  }

  async acquire(ns: string, instanceId: string, ttlMs: number | undefined, clientTime: number | undefined): Promise<WorkerLease> {
    validateNamespace(ns);
    if (!INSTANCE_RE.test(instanceId)) throw invalidArgument("instance_id", "must be 1..128 printable ASCII characters");
    void clientTime;
    const ttl = Math.min(Math.max(ttlMs ?? DEFAULT_TTL_MS, MIN_TTL_MS), MAX_TTL_MS);
    const now = this.now();
    for (const h of this.held.values()) {
      if (h.ns === ns && h.instanceId === instanceId) {
        const cur = await this.pool.readHolder(ns, h.workerId);
        if (cur && cur.data.leaseId === h.leaseId && (cur.data.expireAt ?? 0) > now) {
          const expireAt = await this.extend(h, cur, now + ttl);
          return this.answer(h.workerId, h.leaseId, expireAt, h.lastTime, ttl);
        }
      }
    }
    const expireAt = now + ttl;
    const c = await this.pool.claim(ns, { instanceId, expireAt }, now);
    try {
      await this.pool.recordClock(ns, c.workerId, (prev) => ({
        lastTime: prev?.lastTime ?? 0,
        reservedUntil: Math.max(prev?.reservedUntil ?? 0, expireAt),
        released: false,
      }));
    } catch (e) {
      await c.registration.release().catch(() => {});
      throw e;
    }
    const lastTime = c.mark ? notBefore(c.mark) || undefined : undefined;
    this.held.set(`${ns}/${c.leaseId}`, { ns, workerId: c.workerId, leaseId: c.leaseId, instanceId, ttlMs: ttl, registration: c.registration, lastTime });
    return this.answer(c.workerId, c.leaseId, expireAt, lastTime, ttl);
  }

  async renew(ns: string, workerId: number, leaseId: string, clientTime: number | undefined): Promise<number> {
    validateNamespace(ns);
    this.checkId(workerId, leaseId);
    if (clientTime === undefined) throw invalidArgument("client_time", "is required");
    const now = this.now();
    const cur = await this.pool.readHolder(ns, workerId);
    if (!cur || cur.data.leaseId !== leaseId || (cur.data.expireAt ?? 0) <= now) {
      throw notFound(`worker id lease ${leaseId} (expired or released; stop minting and acquire a new worker id)`);
    }
    const mark = await this.pool.readClock(ns, workerId);
    if (mark && clientTime < mark.lastTime) {
      throw new DomainError(
        "FailedPrecondition",
        `client_time is ${mark.lastTime - clientTime} ms before the last recorded time: the clock went backwards; stop minting until it catches up`,
        { field: "client_time", retryAfterMs: mark.lastTime - clientTime },
      );
    }
    const h = this.held.get(`${ns}/${leaseId}`);
    const ttl = h?.ttlMs ?? Math.max((cur.data.expireAt ?? now) - now, MIN_TTL_MS);
    const expireAt = now + ttl;
    await this.pool.recordClock(ns, workerId, (prev) => ({
      lastTime: clientTime,
      reservedUntil: Math.max(prev?.reservedUntil ?? 0, expireAt),
      released: false,
    }));
    if (!(await this.pool.writeHolder(ns, workerId, { ...cur.data, expireAt }, cur.version))) {
      throw notFound(`worker id lease ${leaseId} (changed concurrently)`);
    }
    return expireAt;
  }

  async release(ns: string, workerId: number, leaseId: string, lastTime: number | undefined): Promise<void> {
    validateNamespace(ns);
    this.checkId(workerId, leaseId);
    const cur = await this.pool.readHolder(ns, workerId);
    if (!cur || cur.data.leaseId !== leaseId) {
      this.held.delete(`${ns}/${leaseId}`);
      return;
    }
    const last = lastTime ?? this.now();
    await this.pool.recordClock(ns, workerId, () => ({ lastTime: last, reservedUntil: last, released: true }));
    const h = this.held.get(`${ns}/${leaseId}`);
    if (h) {
      await h.registration.release();
      this.held.delete(`${ns}/${leaseId}`);
    } else {
      // Held by another service replica: mark expired; its sweep frees the node.
      await this.pool.writeHolder(ns, workerId, { ...cur.data, expireAt: 0 }, cur.version).catch(() => false);
    }
  }

  /** Frees expired leases held by this process. */
  async sweep(): Promise<void> {
    const now = this.now();
    for (const [key, h] of this.held) {
      const cur = await this.pool.readHolder(h.ns, h.workerId);
      if (!cur || cur.data.leaseId !== h.leaseId) {
        this.held.delete(key);
      } else if ((cur.data.expireAt ?? 0) <= now) {
        await h.registration.release();
        this.held.delete(key);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async extend(h: Held, cur: { data: { leaseId: string; instanceId: string; expireAt?: number }; version: number }, expireAt: number): Promise<number> {
    await this.pool.recordClock(h.ns, h.workerId, (prev) => ({
      lastTime: prev?.lastTime ?? 0,
      reservedUntil: Math.max(prev?.reservedUntil ?? 0, expireAt),
      released: false,
    }));
    if (!(await this.pool.writeHolder(h.ns, h.workerId, { ...cur.data, expireAt }, cur.version))) {
      throw new DomainError("Unavailable", "worker lease changed concurrently; retry", { retryAfterMs: 50 });
    }
    return expireAt;
  }

  private answer(workerId: number, leaseId: string, expireAt: number, lastTime: number | undefined, ttl: number): WorkerLease {
    return { workerId, leaseId, expireAt, lastTime, maxWorkers: this.pool.maxWorkers, renewIntervalMs: Math.floor(ttl / 3) };
  }

  private checkId(workerId: number, leaseId: string): void {
    if (!Number.isInteger(workerId) || workerId < 0 || workerId >= this.pool.maxWorkers) {
      throw invalidArgument("worker_id", `must be in [0, ${this.pool.maxWorkers})`);
    }
    if (!leaseId) throw invalidArgument("lease_id", "is required");
    if (leaseId.length > 128) throw invalidArgument("lease_id", "is too long");
  }
}
