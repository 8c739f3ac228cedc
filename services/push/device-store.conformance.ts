/**
 * The DeviceStore contract (ports.ts), run on both engines: memory in
 * adapters/memory-device-store.test.ts, Cassandra in adapters/cassandra-device-store.int.test.ts.
 * Time is passed in, so nothing here sleeps.
 */
import { describe, expect, it } from "vitest";
import type { DeviceStore, Platform, StoredDevice } from "./ports.js";

const T0 = 1_900_000_000_000;
const MAX = 5;

export function deviceStoreConformance(name: string, open: () => Promise<DeviceStore>): void {
  describe(`DeviceStore conformance (${name})`, () => {
    let n = 0;
    /** A user unique per test (a Cassandra store is shared by the file). */
    const user = () => `u${++n}-${Math.random().toString(36).slice(2, 8)}`;
    const dev = (userId: string, deviceId: string, token = `tok-${deviceId}`, platform: Platform = "fcm", displayName = "") => ({
      userId,
      deviceId,
      platform,
      token,
      displayName,
    });
    const ids = (ds: readonly StoredDevice[]) => ds.map((d) => d.deviceId);

    it("register then list returns the device with its times; an unknown user has none", async () => {
      const s = await open();
      const u = user();
      expect(await s.list(u)).toEqual([]);
      const r = await s.register(dev(u, "phone", "t1", "apns", "Pixel"), MAX, T0);
      const want: StoredDevice = { userId: u, deviceId: "phone", platform: "apns", token: "t1", displayName: "Pixel", showPreview: false, createdAtMs: T0, updatedAtMs: T0 };
      expect(r).toEqual({ kind: "registered", device: want });
      expect(await s.list(u)).toEqual([want]);
      expect(await s.list(user())).toEqual([]);
    });

    it("keeps whether the device shows previews, and a re-registration changes it", async () => {
      const s = await open();
      const u = user();
      await s.register({ ...dev(u, "phone"), showPreview: true }, MAX, T0);
      expect((await s.list(u))[0]!.showPreview).toBe(true);
      await s.register(dev(u, "phone"), MAX, T0 + 1);
      expect((await s.list(u))[0]!.showPreview).toBe(false);
    });

    it("re-registering a device id replaces it, keeps its create time, and is never refused when full", async () => {
      const s = await open();
      const u = user();
      for (let i = 0; i < MAX; i++) await s.register(dev(u, `d${i}`), MAX, T0 + i);
      const r = await s.register(dev(u, "d0", "new-token", "webhook", "renamed"), MAX, T0 + 100);
      expect(r.kind).toBe("registered");
      const d0 = (await s.list(u)).find((d) => d.deviceId === "d0")!;
      expect(d0).toMatchObject({ token: "new-token", platform: "webhook", displayName: "renamed", createdAtMs: T0, updatedAtMs: T0 + 100 });
      expect(await s.list(u)).toHaveLength(MAX);
    });

    it("a new device beyond the cap is refused with full; unregistering one makes room", async () => {
      const s = await open();
      const u = user();
      for (let i = 0; i < MAX; i++) expect((await s.register(dev(u, `d${i}`), MAX, T0 + i)).kind).toBe("registered");
      expect(await s.register(dev(u, "sixth"), MAX, T0 + 10)).toEqual({ kind: "full", devices: MAX });
      expect(ids(await s.list(u))).not.toContain("sixth");
      await s.unregister(u, "d2");
      expect((await s.register(dev(u, "sixth"), MAX, T0 + 11)).kind).toBe("registered");
      expect(await s.list(u)).toHaveLength(MAX);
      // Other users have caps of their own.
      expect((await s.register(dev(user(), "d0"), MAX, T0)).kind).toBe("registered");
    });

    it("list is newest update first", async () => {
      const s = await open();
      const u = user();
      await s.register(dev(u, "a"), MAX, T0 + 1);
      await s.register(dev(u, "b"), MAX, T0 + 3);
      await s.register(dev(u, "c"), MAX, T0 + 2);
      expect(ids(await s.list(u))).toEqual(["b", "c", "a"]);
      await s.register(dev(u, "a"), MAX, T0 + 4);
      expect(ids(await s.list(u))).toEqual(["a", "b", "c"]);
    });

    it("the same (platform, token) under another device id replaces that entry, even when full", async () => {
      const s = await open();
      const u = user();
      for (let i = 0; i < MAX; i++) await s.register(dev(u, `d${i}`), MAX, T0 + i);
      const r = await s.register(dev(u, "reinstalled", "tok-d3"), MAX, T0 + 10);
      expect(r.kind).toBe("registered");
      const list = await s.list(u);
      expect(ids(list)).toEqual(["reinstalled", "d4", "d2", "d1", "d0"]);
      // The same token on another platform is another device.
      expect((await s.register(dev(u, "d0", "tok-x", "apns"), MAX, T0 + 11)).kind).toBe("registered");
      expect((await s.register(dev(u, "other", "tok-x", "fcm"), MAX, T0 + 12)).kind).toBe("full");
      // Another user's identical token is not touched.
      const v = user();
      await s.register(dev(v, "v1", "tok-d4"), MAX, T0);
      expect(ids(await s.list(u))).toContain("d4");
    });

    it("unregister removes; unknown ids and users are fine", async () => {
      const s = await open();
      const u = user();
      await s.register(dev(u, "a"), MAX, T0);
      await s.register(dev(u, "b"), MAX, T0 + 1);
      await s.unregister(u, "a");
      await s.unregister(u, "a");
      await s.unregister(u, "nope");
      await s.unregister(user(), "b");
      expect(ids(await s.list(u))).toEqual(["b"]);
    });

    it("removeIfToken removes only while the token is unchanged", async () => {
      const s = await open();
      const u = user();
      await s.register(dev(u, "a", "old"), MAX, T0);
      await s.register(dev(u, "a", "new"), MAX, T0 + 1);
      expect(await s.removeIfToken(u, "a", "old")).toBe(false);
      expect(ids(await s.list(u))).toEqual(["a"]);
      expect(await s.removeIfToken(u, "a", "new")).toBe(true);
      expect(await s.list(u)).toEqual([]);
      expect(await s.removeIfToken(u, "a", "new")).toBe(false);
      expect(await s.removeIfToken(user(), "missing", "x")).toBe(false);
    });

    it("concurrent registers of new devices never leave more than the cap, and every success is stored", async () => {
      const s = await open();
      const u = user();
      await s.register(dev(u, "existing"), MAX, T0);
      const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => s.register(dev(u, `c${i}`), MAX, T0 + 1 + i)));
      const stored = ids(await s.list(u));
      expect(stored.length).toBeLessThanOrEqual(MAX);
      const won = outcomes.flatMap((o) => (o.kind === "registered" ? [o.device.deviceId] : []));
      expect([...stored].sort()).toEqual(["existing", ...won].sort());
      expect(outcomes.filter((o) => o.kind === "full").length).toBe(12 - won.length);
      // Whatever the race left, later registers fill up to exactly the cap.
      for (let i = 0; i < MAX; i++) await s.register(dev(u, `later${i}`), MAX, T0 + 100 + i);
      expect(await s.list(u)).toHaveLength(MAX);
    });
  });
}
