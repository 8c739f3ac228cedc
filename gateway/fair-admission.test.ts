import { describe, expect, it } from "vitest";
import { createFairAdmission } from "./fair-admission.js";
import { addressKey, Budget } from "./transport-limits.js";

const nextTurn = () => new Promise((r) => setImmediate(r));

describe("fair admission of HTTP/2 requests", () => {
  it("starts at once under the per-turn budget, then round-robin by address", async () => {
    const admission = createFairAdmission(2);
    const started: string[] = [];
    const admit = (key: string, name: string) => admission.admit(key, () => started.push(name), () => false);
    // A flood from "a" arrives first, then one request from "b".
    for (let i = 1; i <= 5; i++) admit("a", `a${i}`);
    admit("b", "b1");
    expect(started).toEqual(["a1", "a2"]);
    expect(admission.queued).toBe(4);
    await nextTurn();
    // The newcomer does not wait behind a's backlog.
    expect(started).toEqual(["a1", "a2", "a3", "b1"]);
    await nextTurn();
    await nextTurn();
    expect(started).toEqual(["a1", "a2", "a3", "b1", "a4", "a5"]);
    expect(admission.queued).toBe(0);
  });

  it("skips requests cancelled while they waited (e.g. reset by the client)", async () => {
    const admission = createFairAdmission(1);
    const started: string[] = [];
    admission.admit("a", () => started.push("first"), () => false);
    admission.admit("a", () => started.push("reset"), () => true);
    admission.admit("a", () => started.push("third"), () => false);
    await nextTurn();
    await nextTurn();
    expect(started).toEqual(["first", "third"]);
  });
});

describe("Budget", () => {
  it("refuses beyond the per-key cap and beyond the total, and gives units back", () => {
    const b = new Budget(3, 2);
    expect(b.take("x")).toBeUndefined();
    expect(b.take("x")).toBeUndefined();
    expect(b.take("x")).toBe("address");
    expect(b.take("y")).toBeUndefined();
    expect(b.take("z")).toBe("total");
    b.release("x");
    expect(b.of("x")).toBe(1);
    expect(b.take("z")).toBeUndefined();
    expect(b.total).toBe(3);
  });

  it("has no per-key cap at 0", () => {
    const b = new Budget(10, 0);
    for (let i = 0; i < 10; i++) expect(b.take("x")).toBeUndefined();
    expect(b.take("x")).toBe("total");
  });
});

describe("addressKey", () => {
  it("charges IPv4 per address (also IPv4-mapped) and IPv6 per /64", () => {
    expect(addressKey("203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("2001:db8:1:2:aaaa::1")).toBe(addressKey("2001:db8:1:2:bbbb::9"));
    expect(addressKey("2001:db8:1:2::1")).not.toBe(addressKey("2001:db8:1:3::1"));
  });
});
