/**
 * Token-range domain contract, run on every Coordinator engine: memory (tokenrange.test.ts)
 * and real ZooKeeper (tokenrange.int.test.ts).
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DomainError, isDomainError } from "../../../platform/errors.js";
import type { Coordinator } from "../../../platform/ports/coordinator.js";
import { RangeAllocator } from "../domain/range-allocator.js";
import { WorkerLeaseRegistry } from "../domain/worker-leases.js";
import { createLeaseClient } from "../lease-client.js";
import { directRangeSource } from "../range-source.js";
import { SnowflakeGenerator } from "../snowflake.js";
import { ZkWorkerId } from "../worker-id.js";

export interface TokenRangeFixture {
  open(): Promise<Coordinator>;
  closeSession(c: Coordinator): Promise<void>;
}

async function kindOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => "resolved", (err: unknown) => err);
  return isDomainError(e) ? e.kind : String(e);
}

/** A coordinator whose next N compareAndSet calls perform the write, then report a lost reply. */
function lossyWrites(c: Coordinator, lose: number): Coordinator {
  let left = lose;
  return new Proxy(c, {
    get(target, prop, receiver) {
      if (prop === "compareAndSet") {
        return async (path: string, data: Uint8Array, v: number) => {
          const ok = await target.compareAndSet(path, data, v);
          if (left-- > 0) throw new DomainError("Unavailable", "connection lost during write; outcome unknown");
          return ok;
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

export function tokenRangeConformance(fixture: () => Promise<TokenRangeFixture>): void {
  describe("token-range conformance", () => {
    const root = () => `/tr-${randomUUID().slice(0, 8)}`;

    it("concurrent allocators in several sessions get disjoint, gap-free ranges", async () => {
      const f = await fixture();
      const r = root();
      const sessions = await Promise.all([f.open(), f.open(), f.open(), f.open()]);
      const allocs = sessions.map((s) => new RangeAllocator(s, { root: r }));
      const ranges = (
        await Promise.all(allocs.map(async (a) => { const out = []; for (let i = 0; i < 15; i++) out.push(await a.acquire("links", 7 + i)); return out; }))
      ).flat();
      ranges.sort((x, y) => (x.start < y.start ? -1 : 1));
      let expectNext = 0n;
      for (const x of ranges) {
        expect(x.start).toBe(expectNext);
        expect(x.end > x.start).toBe(true);
        expectNext = x.end;
      }
      const ns = await allocs[0]!.getNamespace("links");
      expect(ns.next).toBe(expectNext);
      expect(ns.limit).toBe(62n ** 7n);
      expect(ns.version).toBeGreaterThanOrEqual(60);
      for (const s of sessions) await f.closeSession(s);
    });

    it("size 0 means 1,000; bounds and namespace rules are InvalidArgument", async () => {
      const f = await fixture();
      const a = new RangeAllocator(await f.open(), { root: root() });
      const r = await a.acquire("ns1", 0);
      expect(r.end - r.start).toBe(1000n);
      expect(await kindOf(a.acquire("ns1", 1_000_001))).toBe("InvalidArgument");
      expect(await kindOf(a.acquire("", 10))).toBe("InvalidArgument");
      expect(await kindOf(a.acquire("a".repeat(64), 10))).toBe("InvalidArgument");
      expect(await kindOf(a.acquire("Links", 10))).toBe("InvalidArgument");
      expect(await kindOf(a.acquire("9x", 10))).toBe("InvalidArgument");
      expect(await kindOf(a.acquire("a/b", 10))).toBe("InvalidArgument");
      expect(await kindOf(a.getNamespace("never-used"))).toBe("NotFound");
    });

    it("a bounded namespace returns a shorter last range, then ResourceExhausted; never wraps", async () => {
      const f = await fixture();
      const a = new RangeAllocator(await f.open(), { root: root(), limits: { tiny: 25n } });
      expect((await a.acquire("tiny", 10)).end).toBe(10n);
      expect((await a.acquire("tiny", 10)).end).toBe(20n);
      const last = await a.acquire("tiny", 10);
      expect([last.start, last.end, last.limit]).toEqual([20n, 25n, 25n]);
      expect(await kindOf(a.acquire("tiny", 1))).toBe("ResourceExhausted");
    });

    it("a write whose reply was lost is recognised by its nonce (no range skipped)", async () => {
      const f = await fixture();
      const r = root();
      const c = await f.open();
      const a = new RangeAllocator(lossyWrites(c, 1), { root: r });
      const first = await a.acquire("links", 100);
      expect([first.start, first.end]).toEqual([0n, 100n]);
      const second = await new RangeAllocator(c, { root: r }).acquire("links", 100);
      expect(second.start).toBe(100n);
    });

    it("a lost reply followed by another writer skips that range, never reuses it", async () => {
      const f = await fixture();
      const r = root();
      const c = await f.open();
      const other = new RangeAllocator(c, { root: r });
      await other.acquire("links", 1);
      let hijack = true;
      const racing: Coordinator = new Proxy(c, {
        get(target, prop, receiver) {
          if (prop === "compareAndSet") {
            return async (path: string, data: Uint8Array, v: number) => {
              const ok = await target.compareAndSet(path, data, v);
              if (hijack) {
                hijack = false;
                await other.acquire("links", 5); // lands after our write, before our re-read
                throw new DomainError("Unavailable", "connection lost during write");
              }
              return ok;
            };
          }
          const value = Reflect.get(target, prop, receiver) as unknown;
          return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
      const mine = await new RangeAllocator(racing, { root: r }).acquire("links", 10);
      // [1, 11) was written and lost (skipped), other got [11, 16); we get a fresh range.
      expect(mine.start).toBe(16n);
    });

    it("lease clients in several sessions never serve the same value", async () => {
      const f = await fixture();
      const r = root();
      const clients = await Promise.all(
        [0, 1, 2].map(async () => createLeaseClient({ namespace: "links", source: directRangeSource(await f.open(), { root: r }), initialSize: 10, maxSize: 50, prefetchAt: 0.5 })),
      );
      const seen = new Set<bigint>();
      for (let i = 0; i < 600; i++) {
        for (const c of clients) {
          const v = await c.nextAsync();
          expect(seen.has(v)).toBe(false);
          seen.add(v);
        }
      }
      for (const c of clients) await c.close();
    });

    it("worker ids: claimed from a bounded pool, exhausted, released, re-claimed after the session ends", async () => {
      const f = await fixture();
      const r = root();
      const s1 = await f.open();
      const s2 = await f.open();
      const w1 = await ZkWorkerId.claim(s1, { namespace: "chat", instanceId: "a", maxWorkers: 2, root: r });
      const w2 = await ZkWorkerId.claim(s2, { namespace: "chat", instanceId: "b", maxWorkers: 2, root: r });
      expect(new Set([w1.current()!.workerId, w2.current()!.workerId])).toEqual(new Set([0, 1]));
      expect(await kindOf(ZkWorkerId.claim(s2, { namespace: "chat", instanceId: "c", maxWorkers: 2, root: r }))).toBe("ResourceExhausted");
      const g = new SnowflakeGenerator({ worker: w1 });
      g.next();
      const freed = w1.current()!.workerId;
      await w1.release();
      expect(w1.current()).toBeUndefined();
      const w3 = await ZkWorkerId.claim(s2, { namespace: "chat", instanceId: "c", maxWorkers: 2, root: r });
      expect(w3.current()!.workerId).toBe(freed);
      expect(w3.current()!.notBeforeMs).toBeGreaterThanOrEqual(g.lastTimeMs);
      await f.closeSession(s2);
      expect(w2.current()).toBeUndefined();
      const s3 = await f.open();
      const w4 = await ZkWorkerId.claim(s3, { namespace: "chat", instanceId: "d", maxWorkers: 2, root: r });
      expect(w4.current()).toBeDefined();
      await w4.release();
      await f.closeSession(s1);
      await f.closeSession(s3);
    });

    it("worker leases (gRPC semantics): acquire, same instance gets the same lease, renew, rollback, release", async () => {
      const f = await fixture();
      const r = root();
      let now = Date.now();
      const reg = new WorkerLeaseRegistry(await f.open(), r, () => now, 3);
      try {
        const a = await reg.acquire("chat", "inst-a", 10_000, now);
        expect(a.maxWorkers).toBe(3);
        expect(a.lastTime).toBeUndefined();
        expect(a.renewIntervalMs).toBe(3333);
        const again = await reg.acquire("chat", "inst-a", 10_000, now);
        expect([again.workerId, again.leaseId]).toEqual([a.workerId, a.leaseId]);
        now += 1000;
        const exp = await reg.renew("chat", a.workerId, a.leaseId, now);
        expect(exp).toBe(now + 10_000);
        expect(await kindOf(reg.renew("chat", a.workerId, a.leaseId, now - 500))).toBe("FailedPrecondition");
        expect(await kindOf(reg.renew("chat", a.workerId, "bogus", now))).toBe("NotFound");
        expect(await reg.activeCount("chat")).toBe(1);
        await reg.release("chat", a.workerId, a.leaseId, now + 5);
        await reg.release("chat", a.workerId, a.leaseId, now + 5); // idempotent
        expect(await reg.activeCount("chat")).toBe(0);
        expect(await kindOf(reg.renew("chat", a.workerId, a.leaseId, now))).toBe("NotFound");
        // expiry: an unrenewed lease is swept; the next holder's last_time covers the whole lease
        const b = await reg.acquire("chat", "inst-b", 5_000, now);
        now += 6_000;
        await reg.sweep();
        expect(await kindOf(reg.renew("chat", b.workerId, b.leaseId, now))).toBe("NotFound");
        const held = [];
        for (let i = 0; i < 3; i++) held.push(await reg.acquire("chat", `x${i}`, 5_000, now));
        expect(await kindOf(reg.acquire("chat", "x9", 5_000, now))).toBe("ResourceExhausted");
        const sameAsB = held.find((h) => h.workerId === b.workerId)!;
        expect(sameAsB.lastTime).toBeGreaterThanOrEqual(b.expireAt);
        expect(await kindOf(reg.acquire("chat", "", 5_000, now))).toBe("InvalidArgument");
      } finally {
        reg.close();
      }
    });
  });
}
