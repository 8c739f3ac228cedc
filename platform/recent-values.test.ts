import { describe, expect, it } from "vitest";
import { RecentValues } from "./recent-values.js";

describe("RecentValues", () => {
  it("loads a key once per TTL, shares concurrent loads, forgets failures, keeps at most maxEntries", async () => {
    let now = 0;
    let loads = 0;
    const values = new RecentValues<string>({ ttlMs: 1_000, maxEntries: 2, now: () => now });
    const load = (v: string) => async () => (loads++, v);
    expect(await Promise.all([values.get("a", load("a1")), values.get("a", load("a2"))])).toEqual(["a1", "a1"]);
    expect(loads).toBe(1);
    now = 999;
    expect(await values.get("a", load("a3"))).toBe("a1");
    now = 1_000;
    expect(await values.get("a", load("a4"))).toBe("a4");
    await expect(values.get("b", async () => Promise.reject(new Error("down")))).rejects.toThrow("down");
    expect(await values.get("b", load("b1"))).toBe("b1");
    await values.get("c", load("c1"));
    // "a" was loaded first of the three: dropped to keep two.
    expect(await values.get("a", load("a5"))).toBe("a5");
    expect(await values.get("c", load("c2"))).toBe("c1");
  });
});
