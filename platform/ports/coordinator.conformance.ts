import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isDomainError } from "../errors.js";
import type { Coordinator } from "./coordinator.js";

export interface CoordinatorFixture {
  /** Opens a new session on the same backend (several per test). */
  open(): Promise<Coordinator>;
  /** Ends a session opened by `open` (its ephemerals go). */
  closeSession(c: Coordinator): Promise<void>;
  cleanup(): Promise<void>;
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function kindOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => "resolved", (err: unknown) => err);
  return isDomainError(e) ? e.kind : String(e);
}

/** Declares the Coordinator contract tests; run by every adapter's test file. */
export function coordinatorConformance(makeFixture: () => Promise<CoordinatorFixture>): void {
  describe("Coordinator conformance", () => {
    let f: CoordinatorFixture;
    let c: Coordinator;
    let root: string;
    beforeEach(async () => {
      f = await makeFixture();
      c = await f.open();
      root = `/conformance-${randomUUID().slice(0, 8)}`;
    });
    afterEach(async () => {
      await f.cleanup();
    });

    it("is connected", () => {
      expect(c.sessionState).toBe("connected");
    });

    it("get of a missing node is undefined; create makes parents; version starts at 0", async () => {
      expect(await c.get(`${root}/a/b`)).toBeUndefined();
      await c.create(`${root}/a/b`, enc("x"));
      const got = await c.get(`${root}/a/b`);
      expect(got && dec(got.data)).toBe("x");
      expect(got?.version).toBe(0);
      expect(await c.children(`${root}/a`)).toEqual(["b"]);
    });

    it("create of an existing node is AlreadyExists", async () => {
      await c.create(`${root}/n`, enc("1"));
      expect(await kindOf(c.create(`${root}/n`, enc("2")))).toBe("AlreadyExists");
    });

    it("compareAndSet succeeds on the expected version only, and bumps the version", async () => {
      await c.create(`${root}/ctr`, enc("0"));
      expect(await c.compareAndSet(`${root}/ctr`, enc("100"), 0)).toBe(true);
      expect(await c.compareAndSet(`${root}/ctr`, enc("999"), 0)).toBe(false);
      const got = await c.get(`${root}/ctr`);
      expect(got && dec(got.data)).toBe("100");
      expect(got?.version).toBe(1);
      expect(await kindOf(c.compareAndSet(`${root}/missing`, enc("1"), 0))).toBe("NotFound");
    });

    it("concurrent compare-and-set increments never lose an update (two sessions)", async () => {
      const other = await f.open();
      await c.create(`${root}/counter`, enc("0"));
      const bump = async (s: Coordinator) => {
        for (;;) {
          const cur = (await s.get(`${root}/counter`))!;
          if (await s.compareAndSet(`${root}/counter`, enc(String(Number(dec(cur.data)) + 1)), cur.version)) return;
        }
      };
      await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 ? c : other)));
      const end = (await c.get(`${root}/counter`))!;
      expect(dec(end.data)).toBe("20");
      expect(end.version).toBe(20);
    });

    it("children of a missing node is []; children are sorted names", async () => {
      expect(await c.children(`${root}/none`)).toEqual([]);
      await c.create(`${root}/p/b`, enc(""));
      await c.create(`${root}/p/a`, enc(""));
      expect(await c.children(`${root}/p`)).toEqual(["a", "b"]);
    });

    it("ephemeral nodes are visible to other sessions and gone after release", async () => {
      const other = await f.open();
      const reg = await c.registerEphemeral(`${root}/servers/s1`, enc("host:1"));
      expect(await other.children(`${root}/servers`)).toEqual(["s1"]);
      const got = await other.get(`${root}/servers/s1`);
      expect(got && dec(got.data)).toBe("host:1");
      expect(await kindOf(other.registerEphemeral(`${root}/servers/s1`, enc("dup")))).toBe("AlreadyExists");
      await reg.release();
      expect(await other.children(`${root}/servers`)).toEqual([]);
      await reg.release(); // idempotent
    });

    it("ephemeral nodes are gone when their session ends", async () => {
      const owner = await f.open();
      await owner.registerEphemeral(`${root}/members/m1`, enc(""));
      expect(await c.children(`${root}/members`)).toEqual(["m1"]);
      await f.closeSession(owner);
      expect(await c.children(`${root}/members`)).toEqual([]);
    });

    it("watchChildren sees children appear, their data change, and go (release and session end)", async () => {
      const owner = await f.open();
      const seen: Record<string, string>[] = [];
      const stop = c.watchChildren(`${root}/watched`, (kids) => {
        seen.push(Object.fromEntries([...kids].map(([k, v]) => [k, dec(v)])));
      });
      const last = () => seen[seen.length - 1];
      const until = async (want: Record<string, string>) => {
        for (let i = 0; i < 200 && JSON.stringify(last()) !== JSON.stringify(want); i++) await new Promise((r) => setTimeout(r, 25));
        expect(last()).toEqual(want);
      };
      try {
        await until({}); // the node does not exist yet: an empty snapshot
        const a = await owner.registerEphemeral(`${root}/watched/a`, enc("load=0"));
        await until({ a: "load=0" });
        await c.registerEphemeral(`${root}/watched/b`, enc("x"));
        await until({ a: "load=0", b: "x" });
        await a.update(enc("load=5"));
        await until({ a: "load=5", b: "x" });
        await a.update(enc("load=7"));
        await until({ a: "load=7", b: "x" });
        await a.release();
        await until({ b: "x" });
        const again = await owner.registerEphemeral(`${root}/watched/a`, enc("back"));
        await until({ a: "back", b: "x" });
        await again.update(enc("back-2"));
        await until({ a: "back-2", b: "x" });
        await f.closeSession(owner);
        await until({ b: "x" });
        expect(await kindOf(again.update(enc("late")))).toMatch(/NotFound|Unavailable/);
        const n = seen.length;
        stop();
        await c.registerEphemeral(`${root}/watched/c`, enc(""));
        await new Promise((r) => setTimeout(r, 200));
        expect(seen.length).toBe(n);
      } finally {
        stop();
      }
    });

    it("rejects malformed paths with InvalidArgument", async () => {
      expect(await kindOf(c.get("relative"))).toBe("InvalidArgument");
      expect(await kindOf(c.create(`${root}/`, enc("")))).toBe("InvalidArgument");
    });
  });
}
