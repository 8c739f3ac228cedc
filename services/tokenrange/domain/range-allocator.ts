/**
 * Range allocator: hands out disjoint half-open ranges [start, end) of a per-namespace 64-bit
 * counter, on the Coordinator port (ZooKeeper in cluster mode, the memory tree otherwise).
 *
 * One counter znode per namespace: `${root}/counters/${namespace}`, data (JSON, numbers as
 * decimal strings): { next, start, owner, nonce, time } — `next` is the first value not yet
 * handed out; `start`/`owner`/`nonce` describe the last successful write, so a writer whose
 * reply was lost (connection loss: outcome unknown) can recognise its own write on re-read.
 *
 * Algorithm (per acquire): read (data, version) -> compute [next, min(next+size, limit)) ->
 * compareAndSet(path, {next: end, nonce}, version).
 *   - true: the range is ours.
 *   - false (BADVERSION): someone else won; re-read and retry (bounded attempts, jittered).
 *   - Unavailable (connection loss, timeout: outcome unknown): the nonce is remembered, the
 *     result discarded; we re-read after a short pause. If the current data carries one of our
 *     nonces, that write landed and its [start, next) is ours; otherwise it is treated as never
 *     written (if it did land and was overwritten since, that range is skipped: never reused).
 * Uniqueness rests on the versioned write alone; the nonce only saves ranges from being skipped.
 */
import { randomBytes } from "node:crypto";
import { DomainError, isDomainError, notFound } from "../../../platform/errors.js";
import type { Coordinator } from "../../../platform/ports/coordinator.js";
import { invalidArgument } from "../../../platform/errors.js";
import { DEFAULT_NAMESPACE_LIMITS, U64_MAX, resourceExhausted, validateNamespace } from "./namespace.js";

export const DEFAULT_ROOT = "/switchboard/tokenrange";
export const DEFAULT_RANGE_SIZE = 1_000n;
export const MAX_RANGE_SIZE = 1_000_000n;

export interface Range {
  readonly namespace: string;
  /** Inclusive. */
  readonly start: bigint;
  /** Exclusive; end > start. */
  readonly end: bigint;
  /** Namespace upper bound (exclusive); 0n = none below 2^64. */
  readonly limit: bigint;
}

export interface NamespaceState {
  readonly name: string;
  readonly next: bigint;
  readonly limit: bigint;
  readonly version: number;
  readonly updateTime: Date | undefined;
}

export interface RangeAllocatorOptions {
  /** Znode root (default /switchboard/tokenrange). */
  readonly root?: string;
  /** Per-namespace upper bounds (default { links: 62^7 }). */
  readonly limits?: Readonly<Record<string, bigint>>;
  /** Max compare-and-set attempts lost to other writers before Unavailable (default 64). */
  readonly maxAttempts?: number;
  /** How long to keep re-trying through Unavailable (connection loss) before giving up (default 2,000 ms). */
  readonly unavailableBudgetMs?: number;
  /** Identifies this allocator in the znode (diagnostics). */
  readonly owner?: string;
  /** Observes every coordinator round trip (get/create/compareAndSet), for benchmarks. */
  readonly onRoundTrip?: (op: "get" | "create" | "cas") => void;
}

interface CounterData {
  next: string;
  start?: string;
  owner?: string;
  nonce?: string;
  time?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class RangeAllocator {
  readonly root: string;
  private readonly limits: Readonly<Record<string, bigint>>;
  private readonly maxAttempts: number;
  private readonly unavailableBudgetMs: number;
  private readonly owner: string;
  private readonly rt: (op: "get" | "create" | "cas") => void;

  constructor(
    private readonly coordinator: Coordinator,
    options: RangeAllocatorOptions = {},
  ) {
    this.root = options.root ?? DEFAULT_ROOT;
    this.limits = options.limits ?? DEFAULT_NAMESPACE_LIMITS;
    this.maxAttempts = options.maxAttempts ?? 64;
    this.unavailableBudgetMs = options.unavailableBudgetMs ?? 2_000;
    this.owner = options.owner ?? `pid${process.pid}-${randomBytes(4).toString("hex")}`;
    this.rt = options.onRoundTrip ?? (() => {});
  }

  counterPath(namespace: string): string {
    return `${this.root}/counters/${namespace}`;
  }

  /** Upper bound (exclusive) of a namespace; 0n = none (the counter still stops at 2^64 - 1). */
  limitOf(namespace: string): bigint {
    return this.limits[namespace] ?? 0n;
  }

  /** Validates a requested size: 0 -> default 1,000; > 1,000,000 -> InvalidArgument. */
  static checkSize(size: bigint | number): bigint {
    const s = BigInt(size);
    if (s < 0n) throw invalidArgument("size", `must be >= 0 (got ${s})`);
    if (s === 0n) return DEFAULT_RANGE_SIZE;
    if (s > MAX_RANGE_SIZE) throw invalidArgument("size", `must be at most ${MAX_RANGE_SIZE} (got ${s})`);
    return s;
  }

  async acquire(namespace: string, size: bigint | number = 0n): Promise<Range> {
    validateNamespace(namespace);
    const want = RangeAllocator.checkSize(size);
    const path = this.counterPath(namespace);
    const limit = this.limitOf(namespace);
    const bound = limit > 0n ? limit : U64_MAX;
    const pending = new Set<string>();
    const deadline = Date.now() + this.unavailableBudgetMs;
    let lost = 0;
    let lastErr: unknown;
    for (;;) {
      try {
        this.rt("get");
        const cur = await this.coordinator.get(path);
        if (!cur) {
          this.rt("create");
          await this.coordinator.create(path, enc.encode(JSON.stringify({ next: "0" } satisfies CounterData))).catch((e) => {
            if (!(isDomainError(e) && e.kind === "AlreadyExists")) throw e;
          });
          continue;
        }
        const data = parse(cur.data, path);
        if (data.nonce && pending.has(data.nonce) && data.start !== undefined) {
          // Our write whose reply was lost did land, and nobody wrote after it.
          return { namespace, start: BigInt(data.start), end: BigInt(data.next), limit };
        }
        const next = BigInt(data.next);
        if (next >= bound) throw resourceExhausted(`namespace ${namespace} is exhausted (next ${next}, limit ${bound})`);
        const end = next + want < bound ? next + want : bound;
        const nonce = randomBytes(12).toString("base64url");
        const body: CounterData = { next: end.toString(), start: next.toString(), owner: this.owner, nonce, time: Date.now() };
        pending.add(nonce);
        this.rt("cas");
        if (await this.coordinator.compareAndSet(path, enc.encode(JSON.stringify(body)), cur.version)) {
          return { namespace, start: next, end, limit };
        }
        // BADVERSION: this nonce was certainly not written.
        pending.delete(nonce);
        if (++lost >= this.maxAttempts) {
          throw new DomainError("Unavailable", `namespace ${namespace}: compare-and-set lost ${lost} races in a row`, {
            retryAfterMs: 50,
          });
        }
        if (lost > 2) await sleep(Math.random() * Math.min(50, lost * 2));
      } catch (e) {
        if (!(isDomainError(e) && e.kind === "Unavailable") || lost >= this.maxAttempts) throw e;
        lastErr = e;
        if (Date.now() >= deadline) {
          throw new DomainError("Unavailable", `token-range store is unavailable: ${e.message}`, { retryAfterMs: 1_000 }, { cause: lastErr });
        }
        await sleep(50);
      }
    }
  }

  async getNamespace(namespace: string): Promise<NamespaceState> {
    validateNamespace(namespace);
    const cur = await this.coordinator.get(this.counterPath(namespace));
    if (!cur) throw notFound(`namespace ${namespace}`);
    const data = parse(cur.data, this.counterPath(namespace));
    return {
      name: namespace,
      next: BigInt(data.next),
      limit: this.limitOf(namespace),
      version: cur.version,
      updateTime: data.time ? new Date(data.time) : undefined,
    };
  }
}

function parse(raw: Uint8Array, path: string): CounterData {
  try {
    const d = JSON.parse(dec.decode(raw)) as CounterData;
    if (typeof d.next !== "string" || !/^\d+$/.test(d.next)) throw new Error("bad next");
    return d;
  } catch (e) {
    throw new DomainError("Internal", `counter znode ${path} holds unreadable data`, {}, { cause: e });
  }
}
