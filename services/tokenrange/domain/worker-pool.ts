/**
 * Worker-id pool on the Coordinator port, shared by the in-process claimer (worker-id.ts) and
 * the gRPC lease registry (worker-leases.ts).
 *
 * Layout under `${root}/workers/${namespace}`:
 *   ids/<n>    EPHEMERAL, n in [0, maxWorkers): held while the holder's session lives.
 *              Data JSON { leaseId, instanceId, expireAt? } (expireAt only for gRPC leases).
 *   clock/<n>  PERSISTENT high-water marks of worker n: JSON { lastTime, reservedUntil, released }
 *              lastTime: highest time a holder reported (ms since the Unix epoch);
 *              reservedUntil: the latest time a holder may have minted ids (lease expiry, or
 *              last record + 2 record intervals for in-process holders).
 *              A new holder must mint only after notBefore = max(lastTime, reservedUntil unless
 *              released cleanly).
 */
import { randomBytes } from "node:crypto";
import { DomainError, isDomainError } from "../../../platform/errors.js";
import type { Coordinator, Registration } from "../../../platform/ports/coordinator.js";

export const DEFAULT_MAX_WORKERS = 1024;

export interface ClockMark {
  readonly lastTime: number;
  readonly reservedUntil: number;
  readonly released: boolean;
}

export interface HolderData {
  readonly leaseId: string;
  readonly instanceId: string;
  readonly expireAt?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class WorkerPool {
  constructor(
    private readonly coordinator: Coordinator,
    readonly root: string,
    readonly maxWorkers = DEFAULT_MAX_WORKERS,
  ) {}

  idsDir(ns: string): string {
    return `${this.root}/workers/${ns}/ids`;
  }
  idPath(ns: string, id: number): string {
    return `${this.idsDir(ns)}/${id}`;
  }
  clockPath(ns: string, id: number): string {
    return `${this.root}/workers/${ns}/clock/${id}`;
  }

  async activeCount(ns: string): Promise<number> {
    return (await this.coordinator.children(this.idsDir(ns))).length;
  }

  /**
   * Claims a free worker id as an ephemeral node. Prefers ids whose clock mark is not ahead of
   * `nowMs` (a free id whose previous holder may still be minting up to a future time is skipped
   * while another one is free). ResourceExhausted when every id is held.
   */
  async claim(ns: string, holder: Omit<HolderData, "leaseId">, nowMs: number): Promise<{ workerId: number; leaseId: string; registration: Registration; mark: ClockMark | undefined }> {
    const taken = new Set((await this.coordinator.children(this.idsDir(ns))).map(Number));
    const free: number[] = [];
    const offset = randomBytes(2).readUInt16BE() % this.maxWorkers;
    for (let i = 0; i < this.maxWorkers; i++) {
      const id = (offset + i) % this.maxWorkers;
      if (!taken.has(id)) free.push(id);
    }
    let fallback: { workerId: number; leaseId: string; registration: Registration; mark: ClockMark | undefined } | undefined;
    let tries = 0;
    for (const id of free) {
      const leaseId = `${id}.${randomBytes(9).toString("base64url")}`;
      let registration: Registration;
      try {
        registration = await this.coordinator.registerEphemeral(this.idPath(ns, id), enc.encode(JSON.stringify({ ...holder, leaseId })));
      } catch (e) {
        if (isDomainError(e) && e.kind === "AlreadyExists") continue;
        throw e;
      }
      const mark = await this.readClock(ns, id).catch(async (e) => {
        await registration.release().catch(() => {});
        throw e;
      });
      const claim = { workerId: id, leaseId, registration, mark };
      if (!mark || notBefore(mark) <= nowMs || ++tries > 8) {
        if (fallback) await fallback.registration.release().catch(() => {});
        return claim;
      }
      // Reserved into the future: keep looking for a better one, hold this as a fallback.
      if (fallback) await registration.release().catch(() => {});
      else fallback = claim;
    }
    if (fallback) return fallback;
    throw new DomainError("ResourceExhausted", `every worker id of namespace ${ns} is leased (${this.maxWorkers})`);
  }

  async readHolder(ns: string, id: number): Promise<{ data: HolderData; version: number } | undefined> {
    const cur = await this.coordinator.get(this.idPath(ns, id));
    if (!cur) return undefined;
    try {
      return { data: JSON.parse(dec.decode(cur.data)) as HolderData, version: cur.version };
    } catch {
      return undefined;
    }
  }

  async writeHolder(ns: string, id: number, data: HolderData, version: number): Promise<boolean> {
    return this.coordinator.compareAndSet(this.idPath(ns, id), enc.encode(JSON.stringify(data)), version);
  }

  async readClock(ns: string, id: number): Promise<ClockMark | undefined> {
    const cur = await this.coordinator.get(this.clockPath(ns, id));
    return cur ? parseMark(cur.data) : undefined;
  }

  /** Raises the clock mark (never lowers lastTime; reservedUntil/released are replaced by `update`). */
  async recordClock(ns: string, id: number, update: (prev: ClockMark | undefined) => ClockMark): Promise<ClockMark> {
    const path = this.clockPath(ns, id);
    for (let i = 0; i < 32; i++) {
      const cur = await this.coordinator.get(path);
      const prev = cur ? parseMark(cur.data) : undefined;
      const u = update(prev);
      const next: ClockMark = { ...u, lastTime: Math.max(u.lastTime, prev?.lastTime ?? 0) };
      const body = enc.encode(JSON.stringify(next));
      if (!cur) {
        try {
          await this.coordinator.create(path, body);
          return next;
        } catch (e) {
          if (isDomainError(e) && e.kind === "AlreadyExists") continue;
          throw e;
        }
      }
      if (await this.coordinator.compareAndSet(path, body, cur.version)) return next;
    }
    throw new DomainError("Unavailable", `worker clock ${path}: too many concurrent writers`, { retryAfterMs: 100 });
  }
}

/** The earliest time (exclusive) a new holder of this id may mint ids at. */
export function notBefore(mark: ClockMark | undefined): number {
  if (!mark) return 0;
  return mark.released ? mark.lastTime : Math.max(mark.lastTime, mark.reservedUntil);
}

function parseMark(raw: Uint8Array): ClockMark | undefined {
  try {
    const m = JSON.parse(dec.decode(raw)) as Partial<ClockMark>;
    return { lastTime: Number(m.lastTime ?? 0), reservedUntil: Number(m.reservedUntil ?? 0), released: m.released === true };
  } catch {
    return undefined;
  }
}
