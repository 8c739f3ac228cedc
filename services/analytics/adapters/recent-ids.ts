/** Ids remembered per generation of the fallback string sets (two generations are kept). */
export const DEDUPE_GENERATION = 250_000;
/** Counter ids remembered per prefix: the last WINDOW counters below the highest one seen. */
export const DEDUPE_WINDOW = 1 << 20;
/** Prefixes (gateway processes) remembered; the least recently used one is forgotten first. */
export const DEDUPE_PREFIXES = 16;

/** Longest base-36 counter taken as a number (36^10 < 2^53). */
const MAX_COUNTER_DIGITS = 10;

/** One bit per counter in (high - window, high]. */
class CounterWindow {
  private readonly bits: Uint32Array;
  private high = -1;

  constructor(private readonly size: number) {
    this.bits = new Uint32Array(size >>> 5);
  }

  add(n: number): boolean {
    if (n > this.high) {
      this.clear(this.high + 1, n);
      this.high = n;
    } else if (n <= this.high - this.size) {
      // Older than the window: forgotten, so counted (like a ledger row past its TTL).
      return true;
    }
    const i = n % this.size;
    const word = i >>> 5;
    const bit = 1 << (i & 31);
    if ((this.bits[word]! & bit) !== 0) return false;
    this.bits[word]! |= bit;
    return true;
  }

  /** Clears the bits of counters from..to (inclusive) before they are reused. */
  private clear(from: number, to: number): void {
    if (to - from + 1 >= this.size) {
      this.bits.fill(0);
      return;
    }
    for (let k = from; k <= to; k++) {
      const i = k % this.size;
      if ((i & 31) === 0 && k + 31 <= to) {
        this.bits[i >>> 5] = 0;
        k += 31;
      } else this.bits[i >>> 5]! &= ~(1 << (i & 31));
    }
  }
}

/**
 * The click event ids recorded lately: the memory engine's dedupe ledger. Memory stays bounded
 * (the embedded engine runs for months).
 *
 * Gateways name their clicks `<per-process prefix>.<base-36 counter>`. Such ids are remembered as
 * bits in a window of the last DEDUPE_WINDOW counters per prefix (for the DEDUPE_PREFIXES most
 * recent prefixes): a set of a million fresh 20-character strings cost more per click than
 * everything else the memory engine does for it. Any other id is kept as a string, in two
 * generations of up to DEDUPE_GENERATION ids (the older generation is dropped when the newer one
 * is full).
 *
 * A duplicate is caught while it is within those bounds. The memory bus redelivers a batch only
 * when its handler failed or did not ack within the ack wait, and recording into memory neither
 * fails nor waits, so a redelivery comes long before then; an id older than the bounds is counted.
 */
export class RecentIds {
  private newer = new Set<string>();
  private older = new Set<string>();
  private readonly windows = new Map<string, CounterWindow>();
  // The prefix of the last counter id and its window: consecutive clicks share their gateway.
  private lastPrefix = "";
  private lastWindow: CounterWindow | undefined;

  constructor(
    private readonly perGeneration = DEDUPE_GENERATION,
    private readonly window = DEDUPE_WINDOW,
    private readonly maxPrefixes = DEDUPE_PREFIXES,
  ) {
    if (window < 32 || (window & (window - 1)) !== 0) throw new RangeError("window must be a power of two >= 32");
  }

  /** Adds the id; false when it was already there. */
  add(id: string): boolean {
    const dot = id.lastIndexOf(".");
    const n = dot > 0 ? counterAfter(id, dot) : -1;
    if (n < 0) return this.addOther(id);
    if (this.lastWindow === undefined || dot !== this.lastPrefix.length || !id.startsWith(this.lastPrefix)) {
      this.select(id.slice(0, dot));
    }
    return this.lastWindow!.add(n);
  }

  private addOther(id: string): boolean {
    if (this.newer.has(id) || this.older.has(id)) return false;
    if (this.newer.size >= this.perGeneration) {
      this.older = this.newer;
      this.newer = new Set();
    }
    this.newer.add(id);
    return true;
  }

  private select(prefix: string): void {
    let w = this.windows.get(prefix);
    if (w) this.windows.delete(prefix);
    else {
      w = new CounterWindow(this.window);
      if (this.windows.size >= this.maxPrefixes) this.windows.delete(this.windows.keys().next().value!);
    }
    this.windows.set(prefix, w);
    this.lastPrefix = prefix;
    this.lastWindow = w;
  }
}

/**
 * The base-36 counter after `dot` (lower-case digits, no leading zero), or -1 when the rest of
 * the id is not one: "x.0" and "x.1z" are counters, "x.01", "x.A" and "x." are not.
 */
function counterAfter(id: string, dot: number): number {
  const len = id.length - dot - 1;
  if (len < 1 || len > MAX_COUNTER_DIGITS) return -1;
  if (len > 1 && id.charCodeAt(dot + 1) === 48) return -1;
  let n = 0;
  for (let i = dot + 1; i < id.length; i++) {
    const c = id.charCodeAt(i);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : -1;
    if (d < 0) return -1;
    n = n * 36 + d;
  }
  return n;
}
