import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isDomainError } from "../errors.js";
import type { Cache } from "./cache.js";

export interface CacheFixture {
  readonly cache: Cache;
  cleanup(): Promise<void>;
  /** Moves time forward; without it the suite sleeps for real. */
  advance?(ms: number): Promise<void>;
}

/** Declares the Cache contract tests; run by every adapter's test file. */
export function cacheConformance(makeCache: () => Promise<CacheFixture>): void {
  describe("Cache conformance", () => {
    let f: CacheFixture;
    let k: (name: string) => string;
    const wait = (ms: number) => (f.advance ? f.advance(ms) : new Promise<void>((r) => setTimeout(r, ms)));

    beforeEach(async () => {
      f = await makeCache();
      const ns = randomUUID().slice(0, 8);
      k = (name) => `conf:${ns}:${name}`;
    });
    afterEach(async () => {
      await f.cleanup();
    });

    it("get of a missing key is undefined", async () => {
      expect(await f.cache.get(k("missing"))).toBeUndefined();
    });

    it("set then get returns the value; set overwrites", async () => {
      await f.cache.set(k("a"), "one", 60_000);
      expect(await f.cache.get(k("a"))).toBe("one");
      await f.cache.set(k("a"), "two", 60_000);
      expect(await f.cache.get(k("a"))).toBe("two");
    });

    it("values expire after their TTL", async () => {
      await f.cache.set(k("ttl"), "v", 150);
      expect(await f.cache.get(k("ttl"))).toBe("v");
      await wait(400);
      expect(await f.cache.get(k("ttl"))).toBeUndefined();
    });

    it("setIfAbsent writes once, and again after expiry", async () => {
      expect(await f.cache.setIfAbsent(k("nx"), "first", 150)).toBe(true);
      expect(await f.cache.setIfAbsent(k("nx"), "second", 150)).toBe(false);
      expect(await f.cache.get(k("nx"))).toBe("first");
      await wait(400);
      expect(await f.cache.setIfAbsent(k("nx"), "third", 60_000)).toBe(true);
      expect(await f.cache.get(k("nx"))).toBe("third");
    });

    it("delete removes; deleting a missing key is fine", async () => {
      await f.cache.set(k("d"), "v", 60_000);
      await f.cache.delete(k("d"));
      expect(await f.cache.get(k("d"))).toBeUndefined();
      await f.cache.delete(k("d"));
    });

    it("increment counts atomically under concurrency", async () => {
      const results = await Promise.all(Array.from({ length: 50 }, () => f.cache.increment(k("n"), 60_000)));
      expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    });

    it("increment uses a fixed window that later hits do not extend", async () => {
      expect(await f.cache.increment(k("w"), 300)).toBe(1);
      await wait(200);
      expect(await f.cache.increment(k("w"), 300)).toBe(2);
      await wait(200);
      // 400 ms after the first hit: the 300 ms window has closed even though hit 2 came at 200 ms.
      expect(await f.cache.increment(k("w"), 300)).toBe(1);
    });

    it("rejects an empty key and a non-positive TTL with InvalidArgument", async () => {
      for (const p of [f.cache.set("", "v", 1000), f.cache.set(k("x"), "v", 0), f.cache.increment(k("x"), -1)]) {
        const err = await p.then(() => undefined, (e: unknown) => e);
        expect(isDomainError(err) && err.kind).toBe("InvalidArgument");
      }
    });
  });
}
