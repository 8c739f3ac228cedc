/**
 * 64-bit time-sortable ids (Twitter Snowflake layout):
 *
 *   0 | 41 bits: ms since SNOWFLAKE_EPOCH_MS (2025-01-01T00:00:00Z, ~69 years) | 10 bits worker | 12 bits sequence
 *
 * The top bit is 0, so ids are positive signed int64 (fit CQL bigint) and sort by time.
 * Guarantees of one generator (one worker id): strictly increasing ids, never a duplicate.
 * - Sequence overflow (4,096 ids in one ms): spins until the next ms (< 1 ms).
 * - Clock behind the last issued time (rollback, or a worker's notBefore mark): waits when the
 *   gap is <= maxRollbackWaitMs (default 5 ms), otherwise throws FailedPrecondition (retryAfterMs
 *   = the gap) and issues nothing until the clock catches up.
 * - No worker id held (session lost): throws Unavailable.
 * `next()` is synchronous; waits are short busy-spins bounded by maxRollbackWaitMs.
 */
import { DomainError } from "../../platform/errors.js";
import { fixedWorkerId, noWorkerId, type WorkerIdSource } from "./worker-id.js";

export const SNOWFLAKE_EPOCH_MS = Date.UTC(2025, 0, 1);
export const TIME_BITS = 41;
export const WORKER_BITS = 10;
export const SEQUENCE_BITS = 12;
export const MAX_WORKER_ID = (1 << WORKER_BITS) - 1;
const MAX_SEQ = (1 << SEQUENCE_BITS) - 1;
const MAX_TIME = 2 ** TIME_BITS - 1;

export interface SnowflakeOptions {
  /** A worker-id holder (ZkWorkerId) or a fixed worker id. */
  readonly worker: WorkerIdSource | number;
  /** Wall clock in Unix ms (default Date.now). */
  readonly now?: () => number;
  readonly epochMs?: number;
  /** Largest backwards clock step that is waited out (default 5 ms); larger ones throw. */
  readonly maxRollbackWaitMs?: number;
}

export interface DecodedSnowflake {
  readonly timeMs: number;
  readonly workerId: number;
  readonly sequence: number;
}

export class SnowflakeGenerator {
  private readonly worker: WorkerIdSource;
  private readonly now: () => number;
  private readonly epochMs: number;
  private readonly maxWait: number;
  private epoch = -1;
  private workerBits = 0n;
  private lastMs = -1;
  private seq = 0;

  constructor(options: SnowflakeOptions) {
    if (typeof options.worker === "number") {
      if (!Number.isInteger(options.worker) || options.worker < 0 || options.worker > MAX_WORKER_ID) {
        throw new DomainError("InvalidArgument", `worker id must be in [0, ${MAX_WORKER_ID}]`, { field: "worker" });
      }
    }
    this.worker = typeof options.worker === "number" ? fixedWorkerId(options.worker) : options.worker;
    this.now = options.now ?? Date.now;
    this.epochMs = options.epochMs ?? SNOWFLAKE_EPOCH_MS;
    this.maxWait = options.maxRollbackWaitMs ?? 5;
  }

  /** Time (Unix ms) of the last id issued, or -1. */
  get lastTimeMs(): number {
    return this.lastMs < 0 ? -1 : this.lastMs + this.epochMs;
  }

  next(): bigint {
    const claim = this.worker.current();
    if (!claim) throw noWorkerId();
    if (claim.epoch !== this.epoch) {
      if (claim.workerId < 0 || claim.workerId > MAX_WORKER_ID) throw new DomainError("Internal", `worker id ${claim.workerId} out of range`);
      this.epoch = claim.epoch;
      this.workerBits = BigInt(claim.workerId) << BigInt(SEQUENCE_BITS);
      // Strictly after the previous holder's mark: treat its ms as fully used.
      const nb = claim.notBeforeMs - this.epochMs;
      if (nb >= this.lastMs) {
        this.lastMs = nb;
        this.seq = MAX_SEQ;
      }
    }
    let t = this.now() - this.epochMs;
    if (t < this.lastMs) t = this.waitUntil(this.lastMs, t);
    if (t === this.lastMs) {
      if (this.seq >= MAX_SEQ) {
        t = this.waitUntil(this.lastMs + 1, t);
        this.seq = 0;
      } else {
        this.seq++;
      }
    } else {
      this.seq = 0;
    }
    if (t > MAX_TIME) throw new DomainError("ResourceExhausted", "snowflake time bits exhausted (epoch + 2^41 ms)");
    if (t < 0) throw new DomainError("FailedPrecondition", "clock is before the snowflake epoch");
    this.lastMs = t;
    this.worker.observe?.(t + this.epochMs);
    return (BigInt(t) << BigInt(WORKER_BITS + SEQUENCE_BITS)) | this.workerBits | BigInt(this.seq);
  }

  /** Spins until the clock reaches `target` (epoch-relative); throws when it is too far ahead. */
  private waitUntil(target: number, t: number): number {
    const gap = target - t;
    if (gap > this.maxWait) {
      throw new DomainError(
        "FailedPrecondition",
        `clock is ${gap} ms behind the last issued id time; refusing to issue ids (max wait ${this.maxWait} ms)`,
        { retryAfterMs: gap },
      );
    }
    const guard = performance.now() + this.maxWait + 50;
    while (t < target) {
      if (performance.now() > guard) {
        throw new DomainError("FailedPrecondition", "clock did not advance while waiting out a rollback", { retryAfterMs: gap });
      }
      t = this.now() - this.epochMs;
    }
    return t;
  }
}

export function decodeSnowflake(id: bigint, epochMs = SNOWFLAKE_EPOCH_MS): DecodedSnowflake {
  return {
    timeMs: Number(id >> BigInt(WORKER_BITS + SEQUENCE_BITS)) + epochMs,
    workerId: Number((id >> BigInt(SEQUENCE_BITS)) & BigInt(MAX_WORKER_ID)),
    sequence: Number(id & BigInt(MAX_SEQ)),
  };
}
