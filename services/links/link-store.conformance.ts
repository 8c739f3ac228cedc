import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDomainError } from "../../platform/errors.js";
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

    describe("aliases are unique ignoring case", () => {
      const alias = () => `bob-secret-${code()}`;
      const flip = (a: string) => a.replace(/[a-z]/g, (c, i: number) => (i % 2 ? c.toUpperCase() : c)).replace(/^b/, "B");

      it("a code differing only in case is refused; get stays case-sensitive", async () => {
        const a = alias();
        const l = link({ code: a, custom: true, version: 1 });
        expect(await f.store.insertIfAbsent(l)).toBe(true);
        expect(await f.store.insertIfAbsent(link({ code: flip(a), ownerId: "mallory", custom: true }))).toBe(false);
        expect(await f.store.insertIfAbsent(link({ code: a.toUpperCase(), ownerId: "mallory" }))).toBe(false);
        expect(await f.store.get(flip(a))).toBeUndefined();
        expect(await f.store.get(a.toUpperCase())).toBeUndefined();
        expect(await f.store.get(a)).toEqual(l);
      });

      it("concurrent inserts differing only in case: exactly one wins and only it is stored", async () => {
        const a = alias();
        const distinct = [a, a.toUpperCase(), flip(a), `B${a.slice(1)}`, `bob-SECRET-${a.slice(11)}`];
        expect(new Set(distinct).size).toBe(5);
        const results = await Promise.all(distinct.map((c, i) => f.store.insertIfAbsent(link({ code: c, ownerId: `racer-${i}` }))));
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = distinct[results.indexOf(true)]!;
        for (const c of distinct) expect((await f.store.get(c))?.code).toBe(c === winner ? winner : undefined);
      });

      it("deleting the alias frees its folded form; a refused delete does not", async () => {
        const a = alias();
        const owner = `o-${code()}`;
        expect(await f.store.insertIfAbsent(link({ code: a, ownerId: owner }))).toBe(true);
        expect(await f.store.delete(flip(a))).toBe(false);
        expect(await f.store.delete(a, "someone-else")).toBe(false);
        expect(await f.store.insertIfAbsent(link({ code: flip(a) }))).toBe(false);
        expect(await f.store.delete(a, owner)).toBe(true);
        const taken = link({ code: flip(a), ownerId: "new-owner" });
        expect(await f.store.insertIfAbsent(taken)).toBe(true);
        expect(await f.store.get(flip(a))).toEqual(taken);
        expect(await f.store.get(a)).toBeUndefined();
        expect(await f.store.insertIfAbsent(link({ code: a }))).toBe(false);
        // The original spelling can come back once the variant is gone too.
        expect(await f.store.delete(flip(a))).toBe(true);
        expect(await f.store.insertIfAbsent(link({ code: a }))).toBe(true);
      });

      it("generated codes (insertUnique) keep their own case space", async () => {
        const g = `Zz${code().slice(0, 5)}`;
        await f.store.insertUnique(link({ code: g }));
        await f.store.insertUnique(link({ code: g.toLowerCase() }));
        expect((await f.store.get(g))?.code).toBe(g);
        expect((await f.store.get(g.toLowerCase()))?.code).toBe(g.toLowerCase());
      });
    });

    it("delete removes (true), then reports false; the code can be reused", async () => {
      const l = link();
      await f.store.insertIfAbsent(l);
      expect(await f.store.delete(l.code)).toBe(true);
      expect(await f.store.get(l.code)).toBeUndefined();
      expect(await f.store.delete(l.code)).toBe(false);
      expect(await f.store.insertIfAbsent(l)).toBe(true);
    });
    it("a full link (version, updatedAt, custom) round-trips; insertUnique stores too", async () => {
      const l = link({ updatedAt: new Date("2024-05-01T10:00:00.123Z"), version: 1, custom: true, expiresAt: new Date("2031-01-01T00:00:00.000Z") });
      expect(await f.store.insertIfAbsent(l)).toBe(true);
      expect(await f.store.get(l.code)).toEqual(l);
      const g = link({ updatedAt: new Date("2024-05-01T10:00:00.123Z"), version: 1, custom: false });
      await f.store.insertUnique(g);
      expect(await f.store.get(g.code)).toEqual(g);
    });

    it("update applies on the expected version only and returns the new link", async () => {
      const l = link({ version: 1, custom: false, updatedAt: new Date("2024-05-01T10:00:00.123Z"), expiresAt: new Date("2031-01-01T00:00:00.000Z") });
      await f.store.insertUnique(l);
      const { expiresAt: _e, ...noExpiry } = l;
      const next: Link = { ...noExpiry, longUrl: "https://example.org/new", redirectType: 301, version: 2, updatedAt: new Date("2024-06-01T00:00:00.000Z") };
      expect(await f.store.update(next, 2)).toEqual({ kind: "version_mismatch" });
      expect(await f.store.update(next, 1)).toEqual({ kind: "updated", link: next });
      expect(await f.store.get(l.code)).toEqual(next);
      expect(await f.store.update({ ...next, version: 3 }, 1)).toEqual({ kind: "version_mismatch" });
      expect(await f.store.update({ ...next, code: code() }, 1)).toEqual({ kind: "not_found" });
    });

    it("update of a link stored without a version treats it as version 1", async () => {
      const l = link();
      await f.store.insertIfAbsent(l);
      const next: Link = { ...l, longUrl: "https://example.org/v2", version: 2, updatedAt: new Date("2024-06-01T00:00:00.000Z"), custom: false };
      expect((await f.store.update(next, 1)).kind).toBe("updated");
      expect((await f.store.get(l.code))?.version).toBe(2);
    });

    it("concurrent updates from one version: exactly one applies", async () => {
      const l = link({ version: 1 });
      await f.store.insertIfAbsent(l);
      const rs = await Promise.all(
        Array.from({ length: 6 }, (_, i) => f.store.update({ ...l, longUrl: `https://e.com/u${i}`, version: 2 }, 1)),
      );
      expect(rs.filter((r) => r.kind === "updated")).toHaveLength(1);
    });

    it("delete with an owner removes only that owner's link", async () => {
      const l = link({ ownerId: `o-${code()}` });
      await f.store.insertIfAbsent(l);
      expect(await f.store.delete(l.code, "someone-else")).toBe(false);
      expect(await f.store.get(l.code)).toBeDefined();
      expect(await f.store.delete(l.code, l.ownerId)).toBe(true);
      expect(await f.store.get(l.code)).toBeUndefined();
    });

    it("listByOwner pages newest first, skips deleted links and other owners", async () => {
      const owner = `lister-${code()}`;
      const t0 = Date.parse("2024-05-01T10:00:00.000Z");
      const mine = Array.from({ length: 7 }, (_, i) => link({ ownerId: owner, createdAt: new Date(t0 + i * 1000), version: 1 }));
      for (const [i, l] of mine.entries()) {
        if (i % 2) await f.store.insertUnique(l);
        else await f.store.insertIfAbsent(l);
      }
      await f.store.insertIfAbsent(link({ ownerId: `other-${code()}` }));
      expect(await f.store.delete(mine[3]!.code)).toBe(true);
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const p = await f.store.listByOwner(owner, 2, token);
        expect(p.links.length).toBeLessThanOrEqual(2);
        seen.push(...p.links.map((l) => l.code));
        token = p.nextPageToken;
        expect(++pages).toBeLessThan(10);
      } while (token);
      const expected = mine.filter((_, i) => i !== 3).reverse().map((l) => l.code);
      expect(seen).toEqual(expected);
      const first = await f.store.listByOwner(owner, 100);
      expect(first.links.map((l) => l.code)).toEqual(expected);
      expect(first.links[0]).toEqual(mine[6]);
      expect((await f.store.listByOwner(`nobody-${code()}`, 10)).links).toEqual([]);
    });

    it("a page token is refused for another owner and when garbled (InvalidArgument page_token)", async () => {
      const owner = `tok-${code()}`;
      for (let i = 0; i < 3; i++) await f.store.insertUnique(link({ ownerId: owner, createdAt: new Date(Date.parse("2024-01-01T00:00:00Z") + i) }));
      const p = await f.store.listByOwner(owner, 1);
      expect(p.nextPageToken).toBeTruthy();
      for (const [o, t] of [["intruder", p.nextPageToken!], [owner, "garbage!"], [owner, "eyJvIjoxfQ"]] as const) {
        const e = await f.store.listByOwner(o, 1, t).then(() => undefined, (err: unknown) => err);
        expect(isDomainError(e) && e.kind).toBe("InvalidArgument");
        expect(isDomainError(e) && e.details.field).toBe("page_token");
      }
    });

    it("idempotency keys: first reserve wins, others see its record; scoped per owner; release only by code", async () => {
      const owner = `idem-${code()}`;
      const key = `k-${code()}`;
      expect(await f.store.getIdempotencyKey(owner, key)).toBeUndefined();
      const rec = { code: "aaaaaaa", requestHash: "h1" };
      expect(await f.store.reserveIdempotencyKey(owner, key, rec, 60_000)).toEqual({ reserved: true, record: rec });
      expect(await f.store.reserveIdempotencyKey(owner, key, { code: "bbbbbbb", requestHash: "h2" }, 60_000)).toEqual({ reserved: false, record: rec });
      expect(await f.store.getIdempotencyKey(owner, key)).toEqual(rec);
      expect(await f.store.getIdempotencyKey(`${owner}-x`, key)).toBeUndefined();
      await f.store.releaseIdempotencyKey(owner, key, "bbbbbbb");
      expect(await f.store.getIdempotencyKey(owner, key)).toEqual(rec);
      await f.store.releaseIdempotencyKey(owner, key, "aaaaaaa");
      expect(await f.store.getIdempotencyKey(owner, key)).toBeUndefined();
    });

    it("concurrent reserves of one key: exactly one wins and all see the winner", async () => {
      const owner = `idem-${code()}`;
      const rs = await Promise.all(
        Array.from({ length: 6 }, (_, i) => f.store.reserveIdempotencyKey(owner, "same", { code: `c${i}`, requestHash: "h" }, 60_000)),
      );
      expect(rs.filter((r) => r.reserved)).toHaveLength(1);
      const winner = rs.find((r) => r.reserved)!.record;
      for (const r of rs) expect(r.record).toEqual(winner);
    });
  });
}
