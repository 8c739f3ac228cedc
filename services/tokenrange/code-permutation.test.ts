import { describe, expect, it } from "vitest";
import { CODE_SPACE_SIZE, CodePermutation, decodeCode, encodeCode, fromBase62, toBase62 } from "./code-permutation.js";
import { DEV_CODE_KEY, loadCodeKey } from "./code-key.js";

const KEY = "test-key-0123456789abcdef";
const p = new CodePermutation(KEY);
const CODE_RE = /^[0-9A-Za-z]{7}$/;

function* edges(): Generator<number> {
  for (let i = 0; i < 2000; i++) yield i;
  for (let i = 0; i < 2000; i++) yield CODE_SPACE_SIZE - 1 - i;
  for (let k = 1; k <= 21; k++) {
    const b = 2 ** (21 + k); // crossing high-half bits
    for (let d = -3; d <= 3; d++) if (b + d >= 0 && b + d < CODE_SPACE_SIZE) yield b + d;
  }
  for (const m of [1, 2, 3, 1000, 1_679_000]) for (let d = -50; d <= 50; d++) yield m * 2 ** 21 + d;
}

describe("code permutation", () => {
  it("is a bijection on 10^6 sampled counters (+ edges): distinct outputs, inverse round trip, 7 base62 chars", () => {
    const seen = new Set<number>();
    const inputs = new Set<number>();
    let x = 12345;
    for (let i = 0; inputs.size < 1_000_000; i++) {
      x = (x * 48271 + 11) % 2147483647;
      inputs.add(i % 2 ? i : Math.floor(((x + Math.random()) / 2147483647) * CODE_SPACE_SIZE));
    }
    for (const e of edges()) inputs.add(e);
    let bad = 0;
    for (const v of inputs) {
      const y = p.permute(v);
      if (!(y >= 0 && y < CODE_SPACE_SIZE)) bad++;
      seen.add(y);
      if (p.unpermute(y) !== v) bad++;
      const code = toBase62(y);
      if (!CODE_RE.test(code) || fromBase62(code) !== y) bad++;
    }
    expect(bad).toBe(0);
    expect(seen.size).toBe(inputs.size);
    expect(inputs.size).toBeGreaterThan(1_000_000);
  }, 60_000);

  it("maps exhaustively a small window to distinct codes and round-trips every one", () => {
    const codes = new Set<string>();
    for (let v = 0; v < 200_000; v++) {
      const c = p.encode(v);
      codes.add(c);
      if (p.decode(c) !== BigInt(v)) throw new Error(`round trip failed at ${v}`);
    }
    expect(codes.size).toBe(200_000);
  }, 30_000);

  it("consecutive counters give unrelated codes (no shared prefix pattern, bits flip ~50%)", () => {
    let flips = 0;
    let samePrefix = 0;
    const n = 20_000;
    for (let v = 0; v < n; v++) {
      const a = p.permute(v);
      const b = p.permute(v + 1);
      let d = Math.floor(a / 2 ** 21) ^ Math.floor(b / 2 ** 21);
      let e = (a % 2 ** 21) ^ (b % 2 ** 21);
      for (; d; d &= d - 1) flips++;
      for (; e; e &= e - 1) flips++;
      if (toBase62(a).slice(0, 3) === toBase62(b).slice(0, 3)) samePrefix++;
    }
    const avg = flips / n;
    expect(avg).toBeGreaterThan(18);
    expect(avg).toBeLessThan(24);
    expect(samePrefix).toBeLessThan(n * 0.01);
  });

  it("different keys give different permutations", () => {
    const q = new CodePermutation("another-key-0123456789");
    let same = 0;
    for (let v = 0; v < 10_000; v++) if (p.permute(v) === q.permute(v)) same++;
    expect(same).toBeLessThan(3);
    expect(encodeCode(42n, KEY)).toBe(p.encode(42));
    expect(decodeCode(encodeCode(42n, KEY), KEY)).toBe(42n);
  });

  it("rejects counters >= 62^7, negative ones, malformed codes and short keys", () => {
    expect(() => p.encode(BigInt(CODE_SPACE_SIZE))).toThrow(/outside/);
    expect(() => p.encode(-1)).toThrow(/outside/);
    expect(p.encode(CODE_SPACE_SIZE - 1)).toMatch(CODE_RE);
    for (const bad of ["", "abc", "abcdefgh", "abc-efg", "abcdéfg"]) expect(() => p.decode(bad)).toThrow(/base62/);
    expect(() => new CodePermutation("short")).toThrow(/16/);
    expect(fromBase62("zzzzzzz")).toBe(CODE_SPACE_SIZE - 1);
    expect(toBase62(0)).toBe("0000000");
  });

  it("SWITCHBOARD_CODE_KEY: dev default with a warning in memory mode, required in cluster, min 16 chars", () => {
    const warnings: unknown[] = [];
    expect(loadCodeKey("memory", { warn: (o) => warnings.push(o) }, {})).toBe(DEV_CODE_KEY);
    expect(warnings).toHaveLength(1);
    expect(() => loadCodeKey("cluster", undefined, {})).toThrow(/SWITCHBOARD_CODE_KEY/);
    expect(() => loadCodeKey("memory", undefined, { SWITCHBOARD_CODE_KEY: "tooshort" })).toThrow(/at least 16/);
    expect(loadCodeKey("cluster", undefined, { SWITCHBOARD_CODE_KEY: "x".repeat(16) })).toBe("x".repeat(16));
  });
});
