import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Link, LinkStore } from "./ports.js";

export interface LinkStoreFixture {
  readonly store: LinkStore;
  cleanup(): Promise<void>;
}

/** Declares the LinkStore contract tests; run by every adapter's test file. */
export function linkStoreConformance(makeStore: () => Promise<LinkStoreFixture>): void {
  describe("LinkStore conformance", () => {
    let f: LinkStoreFixture;
    beforeAll(async () => {
      f = await makeStore();
    });
    afterAll(async () => {
      await f.cleanup();
    });
    const code = () => randomUUID().replace(/-/g, "").slice(0, 7);
    const link = (over: Partial<Link> = {}): Link => ({
      code: code(),
      longUrl: "https://example.com/some/path?q=1",
      ownerId: "user-1",
      createdAt: new Date("2024-05-01T10:00:00.123Z"),
      redirectType: 302,
      ...over,
    });

    it("get of an unknown code is undefined", async () => {
      expect(await f.store.get(code())).toBeUndefined();
    });

    it("insertIfAbsent stores a link that get returns field for field (ms precision)", async () => {
      const l = link({ expiresAt: new Date("2030-01-02T03:04:05.678Z"), redirectType: 301 });
      expect(await f.store.insertIfAbsent(l)).toBe(true);
      expect(await f.store.get(l.code)).toEqual(l);
    });

    it("a link without expiry comes back without expiresAt", async () => {
      const l = link();
      await f.store.insertIfAbsent(l);
      const got = await f.store.get(l.code);
      expect(got).toEqual(l);
      expect(got && "expiresAt" in got).toBe(false);
    });

    it("insertIfAbsent never overwrites: second insert of a code is false and the first wins", async () => {
      const first = link();
      expect(await f.store.insertIfAbsent(first)).toBe(true);
      expect(await f.store.insertIfAbsent({ ...first, longUrl: "https://evil.example/" })).toBe(false);
      expect((await f.store.get(first.code))?.longUrl).toBe(first.longUrl);
    });

    it("concurrent inserts of one code: exactly one wins", async () => {
      const c = code();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => f.store.insertIfAbsent(link({ code: c, longUrl: `https://e.com/${i}` }))),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      expect((await f.store.get(c))?.longUrl).toBe(`https://e.com/${winner}`);
    });

    it("codes are case-sensitive", async () => {
      const l = link({ code: "AbCdEf" + code().slice(0, 1) });
      await f.store.insertIfAbsent(l);
      expect(await f.store.get(l.code.toLowerCase())).toBeUndefined();
    });

    it("delete removes (true), then reports false; the code can be reused", async () => {
      const l = link();
      await f.store.insertIfAbsent(l);
      expect(await f.store.delete(l.code)).toBe(true);
      expect(await f.store.get(l.code)).toBeUndefined();
      expect(await f.store.delete(l.code)).toBe(false);
      expect(await f.store.insertIfAbsent(l)).toBe(true);
    });
  });
}
