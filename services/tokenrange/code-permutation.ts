/**
 * Counter -> 7-char base62 short code, through a keyed permutation of [0, 62^7).
 *
 * - A balanced Feistel network over 42 bits (two 21-bit halves), 8 rounds. Round i maps
 *   (L, R) -> (R, L xor F_i(R)), F_i(x) = a keyed 32-bit mixer (multiply/xor-shift, two
 *   multiplications with key-dependent constants) truncated to 21 bits. The per-round keys
 *   (4 x 32 bits each) come from HMAC-SHA256(key, "switchboard-code/v1/round/<i>"), computed
 *   once per key. A Feistel network is a bijection on [0, 2^42) whatever F is.
 * - Cycle walking: 62^7 < 2^42, so the permutation is re-applied until the value is < 62^7; this
 *   restricts the bijection to [0, 62^7) (expected 1.25 applications).
 * - Base62 alphabet 0-9A-Za-z, always 7 characters (left-padded with "0").
 * Consecutive counters give unrelated-looking codes; no collision check is ever needed.
 * It is an obfuscation-grade keyed PRP (not a vetted cipher like FF1): enough that codes are not
 * enumerable by incrementing, while running at millions of codes per second.
 */
import { createHmac } from "node:crypto";
import { DomainError, invalidArgument } from "../../platform/errors.js";

export const CODE_LENGTH = 7;
/** 62^7 = 3,521,614,606,208 */
export const CODE_SPACE_SIZE = 62 ** 7;
export const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ROUNDS = 8;
const HALF_BITS = 21;
const HALF = 1 << HALF_BITS; // 2^21
const HALF_MASK = HALF - 1;
const MIN_KEY_LENGTH = 16;

const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

export class CodePermutation {
  private readonly k: Uint32Array;

  constructor(key: string | Uint8Array) {
    const bytes = typeof key === "string" ? Buffer.from(key, "utf8") : Buffer.from(key);
    if (bytes.length < MIN_KEY_LENGTH) throw invalidArgument("code key", `must be at least ${MIN_KEY_LENGTH} bytes`);
    this.k = new Uint32Array(ROUNDS * 4);
    for (let r = 0; r < ROUNDS; r++) {
      const d = createHmac("sha256", bytes).update(`switchboard-code/v1/round/${r}`).digest();
      for (let j = 0; j < 4; j++) this.k[r * 4 + j] = d.readUInt32BE(j * 4);
      // Multipliers must be odd.
      this.k[r * 4 + 1]! |= 1;
      this.k[r * 4 + 3]! |= 1;
    }
  }

  /** Keyed permutation of [0, 62^7) (numbers). */
  permute(x: number): number {
    if (!Number.isInteger(x) || x < 0 || x >= CODE_SPACE_SIZE) {
      throw new DomainError("InvalidArgument", `counter ${x} is outside [0, 62^7)`, { field: "counter" });
    }
    do x = this.feistel(x);
    while (x >= CODE_SPACE_SIZE);
    return x;
  }

  /** Inverse of permute. */
  unpermute(y: number): number {
    if (!Number.isInteger(y) || y < 0 || y >= CODE_SPACE_SIZE) {
      throw new DomainError("InvalidArgument", `value ${y} is outside [0, 62^7)`, { field: "code" });
    }
    do y = this.feistelInverse(y);
    while (y >= CODE_SPACE_SIZE);
    return y;
  }

  /** Counter (0 <= counter < 62^7) -> 7-char base62 code. */
  encode(counter: bigint | number): string {
    const n = typeof counter === "bigint" ? toNumber(counter) : counter;
    return toBase62(this.permute(n));
  }

  /** 7-char base62 code -> counter. InvalidArgument for a malformed code. */
  decode(code: string): bigint {
    return BigInt(this.unpermute(fromBase62(code)));
  }

  private round(r: number, x: number): number {
    const k = this.k;
    const o = r * 4;
    let h = (x ^ k[o]!) >>> 0;
    h = Math.imul(h ^ (h >>> 15), k[o + 1]!);
    h ^= k[o + 2]!;
    h = Math.imul(h ^ (h >>> 13), k[o + 3]!);
    h ^= h >>> 16;
    return h & HALF_MASK;
  }

  private feistel(x: number): number {
    let l = Math.floor(x / HALF);
    let r = x & HALF_MASK; // x < 2^42: low 21 bits survive the int32 conversion
    for (let i = 0; i < ROUNDS; i++) {
      const t = r;
      r = l ^ this.round(i, r);
      l = t;
    }
    return l * HALF + r;
  }

  private feistelInverse(y: number): number {
    let l = Math.floor(y / HALF);
    let r = y & HALF_MASK;
    for (let i = ROUNDS - 1; i >= 0; i--) {
      const t = l;
      l = r ^ this.round(i, l);
      r = t;
    }
    return l * HALF + r;
  }
}

function toNumber(c: bigint): number {
  if (c < 0n || c >= BigInt(CODE_SPACE_SIZE)) {
    throw new DomainError("InvalidArgument", `counter ${c} is outside [0, 62^7)`, { field: "counter" });
  }
  return Number(c);
}

export function toBase62(v: number): string {
  let s = "";
  for (let i = 0; i < CODE_LENGTH; i++) {
    const q = Math.floor(v / 62);
    s = ALPHABET[v - q * 62]! + s;
    v = q;
  }
  return s;
}

export function fromBase62(code: string): number {
  if (code.length !== CODE_LENGTH) throw invalidArgument("code", `must be ${CODE_LENGTH} base62 characters`);
  let v = 0;
  for (let i = 0; i < CODE_LENGTH; i++) {
    const c = code.charCodeAt(i);
    const d = c < 128 ? DECODE[c]! : -1;
    if (d < 0) throw invalidArgument("code", `must be ${CODE_LENGTH} base62 characters [0-9A-Za-z]`);
    v = v * 62 + d;
  }
  return v;
}

let defaultPerm: CodePermutation | undefined;
let defaultKey: string | undefined;

/** Encodes with the permutation for `key` (cached for the last key used). */
export function encodeCode(counter: bigint | number, key: string): string {
  return permutationFor(key).encode(counter);
}

/** Decodes with the permutation for `key` (cached for the last key used). */
export function decodeCode(code: string, key: string): bigint {
  return permutationFor(key).decode(code);
}

function permutationFor(key: string): CodePermutation {
  if (defaultKey !== key || !defaultPerm) {
    defaultPerm = new CodePermutation(key);
    defaultKey = key;
  }
  return defaultPerm;
}
