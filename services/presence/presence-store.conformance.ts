/**
 * The PresenceStore contract (ports.ts), run on both engines: memory in
 * adapters/memory-presence-store.test.ts, Redis in adapters/redis-presence-store.int.test.ts.
 * Time is passed in, so nothing here sleeps.
 */
import { describe, expect, it } from "vitest";
import type { PresenceStore, PresenceTimings, Transition } from "./ports.js";

const T0 = 1_700_000_000_000;
const TIMINGS: PresenceTimings = { timeoutMs: 30_000, graceMs: 5_000, minDwellMs: 0 };

const brief = (ts: readonly Transition[]) => ts.map((t) => `${t.userId}:${t.online ? "on" : "off"}@${t.changedAtMs - T0}`);

export function presenceStoreConformance(name: string, open: () => Promise<PresenceStore>): void {
  describe(`PresenceStore conformance (${name})`, () => {
    let n = 0;
    /** Users unique per test (the Redis store is shared by the file). */
    const users = (...names: string[]) => {
      n++;
      return names.map((x) => `${x}-${n}-${Math.random().toString(36).slice(2, 8)}`);
    };
    /** Sweeps everything due at `now` (stores shared by a file may hold other tests' users: keep only ours). */
    const sweepAll = async (s: PresenceStore, now: number, mine: readonly string[], t = TIMINGS) => {
      const out: Transition[] = [];
      for (;;) {
        const r = await s.sweep(now, 100, t);
        out.push(...r.transitions);
        if (!r.more) break;
      }
      return out.filter((x) => mine.includes(x.userId));
    };

    it("a first heartbeat makes an unknown user online, with last seen; unknown users read undefined, in order", async () => {
      const s = await open();
      const [alice, nobody] = users("alice", "nobody");
      expect(await s.read([alice!, nobody!], T0)).toEqual([undefined, undefined]);
      const tr = await s.heartbeat([{ userId: alice!, deviceId: "phone" }], T0, TIMINGS);
      expect(tr).toEqual([{ userId: alice, online: true, lastSeenMs: T0, changedAtMs: T0 }]);
      expect(await s.read([nobody!, alice!], T0 + 1)).toEqual([undefined, { online: true, lastSeenMs: T0, changedAtMs: T0 }]);
      // A second heartbeat is no transition, and moves last seen.
      expect(await s.heartbeat([{ userId: alice!, deviceId: "phone" }], T0 + 10_000, TIMINGS)).toEqual([]);
      expect((await s.read([alice!], T0 + 10_000))[0]).toEqual({ online: true, lastSeenMs: T0 + 10_000, changedAtMs: T0 });
    });

    it("online while any device is: one device expiring changes nothing, the last one makes the user offline at its deadline", async () => {
      const s = await open();
      const [bob] = users("bob");
      await s.heartbeat([{ userId: bob!, deviceId: "phone" }], T0, TIMINGS);
      await s.heartbeat([{ userId: bob!, deviceId: "laptop" }], T0 + 5_000, TIMINGS);
      await s.heartbeat([{ userId: bob!, deviceId: "laptop" }], T0 + 20_000, TIMINGS);
      // The phone's deadline (T0 + 30 s) passes: the laptop is still alive until T0 + 50 s.
      expect(await sweepAll(s, T0 + 31_000, [bob!])).toEqual([]);
      expect((await s.read([bob!], T0 + 31_000))[0]?.online).toBe(true);
      // Not due yet one millisecond before the laptop's deadline.
      expect(await sweepAll(s, T0 + 49_999, [bob!])).toEqual([]);
      const off = await sweepAll(s, T0 + 50_000, [bob!]);
      expect(off).toEqual([{ userId: bob, online: false, lastSeenMs: T0 + 20_000, changedAtMs: T0 + 50_000 }]);
      expect((await s.read([bob!], T0 + 50_001))[0]).toEqual({ online: false, lastSeenMs: T0 + 20_000, changedAtMs: T0 + 50_000 });
      // Swept once: a second sweep finds nothing, and the user is out of the index.
      expect(await sweepAll(s, T0 + 90_000, [bob!])).toEqual([]);
      // Back: online again.
      expect(brief(await s.heartbeat([{ userId: bob!, deviceId: "phone" }], T0 + 100_000, TIMINGS))).toEqual([`${bob}:on@100000`]);
    });

    it("going offline: with no grace the user is offline at once; unknown devices are ignored", async () => {
      const s = await open();
      const [carol, dan] = users("carol", "dan");
      const t = { ...TIMINGS, graceMs: 0 };
      await s.heartbeat([{ userId: carol!, deviceId: "a" }], T0, t);
      expect(await s.goingOffline([{ userId: carol!, deviceId: "other" }], T0 + 1_000, t)).toEqual([]);
      expect(await s.goingOffline([{ userId: dan!, deviceId: "x" }], T0 + 1_000, t)).toEqual([]);
      expect(await s.read([dan!], T0 + 1_000)).toEqual([undefined]);
      const tr = await s.goingOffline([{ userId: carol!, deviceId: "a" }], T0 + 2_000, t);
      expect(tr).toEqual([{ userId: carol, online: false, lastSeenMs: T0 + 2_000, changedAtMs: T0 + 2_000 }]);
      expect(await sweepAll(s, T0 + 60_000, [carol!], t)).toEqual([]);
    });

    it("grace: a device that goes offline and is back within the grace period causes no transition", async () => {
      const s = await open();
      const [erin] = users("erin");
      await s.heartbeat([{ userId: erin!, deviceId: "a" }], T0, TIMINGS);
      expect(await s.goingOffline([{ userId: erin!, deviceId: "a" }], T0 + 1_000, TIMINGS)).toEqual([]);
      expect((await s.read([erin!], T0 + 1_000))[0]?.online).toBe(true);
      expect(await s.heartbeat([{ userId: erin!, deviceId: "a" }], T0 + 5_999, TIMINGS)).toEqual([]);
      // The heartbeat gave the device its full timeout again: nothing at the old grace deadline.
      expect(await sweepAll(s, T0 + 6_001, [erin!])).toEqual([]);
      // Gone for good: offline when the grace after going offline ends, last seen = going offline.
      await s.goingOffline([{ userId: erin!, deviceId: "a" }], T0 + 10_000, TIMINGS);
      expect(await sweepAll(s, T0 + 14_999, [erin!])).toEqual([]);
      expect(await sweepAll(s, T0 + 15_000, [erin!])).toEqual([{ userId: erin, online: false, lastSeenMs: T0 + 10_000, changedAtMs: T0 + 15_000 }]);
    });

    it("a device reconnecting every 2 s for a minute is one transition (grace 5 s)", async () => {
      const s = await open();
      const [flap] = users("flap");
      const seen: Transition[] = [];
      for (let i = 0; i <= 30; i++) {
        const t = T0 + i * 2_000;
        seen.push(...(await s.heartbeat([{ userId: flap!, deviceId: "d" }], t, TIMINGS)));
        seen.push(...(await s.goingOffline([{ userId: flap!, deviceId: "d" }], t + 1_500, TIMINGS)));
        seen.push(...(await sweepAll(s, t + 1_900, [flap!])));
      }
      expect(brief(seen)).toEqual([`${flap}:on@0`]);
    });

    it("damping: after a transition the next one waits until the minimum dwell has passed, and nets out flaps", async () => {
      const s = await open();
      const [gus, hal] = users("gus", "hal");
      const t = { timeoutMs: 30_000, graceMs: 0, minDwellMs: 10_000 };
      expect(brief(await s.heartbeat([{ userId: gus!, deviceId: "a" }], T0, t))).toEqual([`${gus}:on@0`]);
      // Offline 1 s later: held back (still published online) until T0 + 10 s.
      expect(await s.goingOffline([{ userId: gus!, deviceId: "a" }], T0 + 1_000, t)).toEqual([]);
      expect((await s.read([gus!], T0 + 1_000))[0]?.online).toBe(true);
      expect(await sweepAll(s, T0 + 9_999, [gus!], t)).toEqual([]);
      expect(brief(await sweepAll(s, T0 + 10_000, [gus!], t))).toEqual([`${gus}:off@10000`]);
      // Back at 11 s: held until 20 s.
      expect(await s.heartbeat([{ userId: gus!, deviceId: "a" }], T0 + 11_000, t)).toEqual([]);
      expect(brief(await sweepAll(s, T0 + 20_000, [gus!], t))).toEqual([`${gus}:on@20000`]);
      // A flap inside the dwell that is over when it ends publishes nothing.
      await s.heartbeat([{ userId: hal!, deviceId: "a" }], T0, t);
      await s.goingOffline([{ userId: hal!, deviceId: "a" }], T0 + 1_000, t);
      await s.heartbeat([{ userId: hal!, deviceId: "a" }], T0 + 2_000, t);
      expect(await sweepAll(s, T0 + 10_000, [hal!], t)).toEqual([]);
      expect((await s.read([hal!], T0 + 10_000))[0]).toMatchObject({ online: true, changedAtMs: T0 });
    });

    it("sweeps are bounded and repeatable: `limit` users per call, `more` until done, each transition once", async () => {
      const s = await open();
      const us = users("u1", "u2", "u3");
      const t = { ...TIMINGS, timeoutMs: 1_000 };
      await s.heartbeat(us.map((userId) => ({ userId, deviceId: "d" })), T0, t);
      // Other tests' users may be due too: drain with limit 1 and count ours.
      const mine: Transition[] = [];
      let calls = 0;
      for (;;) {
        const r = await s.sweep(T0 + 1_000, 1, t);
        calls++;
        expect(r.transitions.length).toBeLessThanOrEqual(1);
        mine.push(...r.transitions.filter((x) => us.includes(x.userId)));
        if (!r.more) break;
      }
      expect(calls).toBeGreaterThanOrEqual(3);
      expect(mine.map((x) => x.userId).sort()).toEqual([...us].sort());
      expect(mine.every((x) => !x.online && x.lastSeenMs === T0)).toBe(true);
      expect(await sweepAll(s, T0 + 1_000, us, t)).toEqual([]);
    });

    it("a batch heartbeat of many devices reports each user's transition once", async () => {
      const s = await open();
      const us = Array.from({ length: 1_200 }, (_, i) => users(`b${i}`)[0]!);
      const beats = us.flatMap((userId) => [
        { userId, deviceId: "a" },
        { userId, deviceId: "b" },
      ]);
      const tr = await s.heartbeat(beats, T0, TIMINGS);
      expect(tr.length).toBe(us.length);
      expect(new Set(tr.map((x) => x.userId)).size).toBe(us.length);
      const rec = await s.read(us, T0);
      expect(rec.every((r) => r?.online === true)).toBe(true);
    });
  });
}
