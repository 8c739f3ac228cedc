import { describe, expect, it } from "vitest";
import { RecentIds } from "./recent-ids.js";

describe("RecentIds (memory engine click dedupe)", () => {
  it("remembers gateway-style ids (<prefix>.<base-36 counter>), also out of order", () => {
    const ids = new RecentIds();
    expect(ids.add("gwA.0")).toBe(true);
    expect(ids.add("gwA.2")).toBe(true);
    expect(ids.add("gwA.1")).toBe(true);
    expect(ids.add("gwA.2")).toBe(false);
    expect(ids.add("gwA.0")).toBe(false);
    // Same counter under another prefix is another click.
    expect(ids.add("gwB.2")).toBe(true);
    expect(ids.add("gwA.1")).toBe(false);
    expect(ids.add("gwB.2")).toBe(false);
  });

  it("keeps every other id as a string: no two spellings of one number are merged", () => {
    const ids = new RecentIds();
    for (const id of ["x.01", "x.1", "x.A", "x.a", "x.", "no-dot", "9f1c6c4e-uuid", "a.b.c"]) expect(ids.add(id)).toBe(true);
    for (const id of ["x.01", "x.1", "x.A", "x.a", "x.", "no-dot", "9f1c6c4e-uuid", "a.b.c"]) expect(ids.add(id)).toBe(false);
    // "x.a" (counter 10) and "x.10" (counter 36) differ.
    expect(ids.add("x.10")).toBe(true);
  });

  it("forgets counters older than the window (they count again) but not newer ones", () => {
    const ids = new RecentIds(1_000, 64);
    for (let n = 0; n < 200; n++) expect(ids.add(`p.${n.toString(36)}`)).toBe(true);
    // 199 is the highest: 136..199 are inside the 64-counter window, 135 and below are forgotten.
    expect(ids.add(`p.${(150).toString(36)}`)).toBe(false);
    expect(ids.add(`p.${(136).toString(36)}`)).toBe(false);
    expect(ids.add(`p.${(135).toString(36)}`)).toBe(true);
    // A jump far ahead clears the window.
    expect(ids.add(`p.${(10_000).toString(36)}`)).toBe(true);
    expect(ids.add(`p.${(9_999).toString(36)}`)).toBe(true);
    expect(ids.add(`p.${(9_999).toString(36)}`)).toBe(false);
  });

  it("keeps two generations of other ids and a bounded number of prefixes", () => {
    const ids = new RecentIds(3, 64, 2);
    for (const id of ["u1", "u2", "u3", "u4"]) expect(ids.add(id)).toBe(true);
    expect(ids.add("u1")).toBe(false); // older generation
    for (const id of ["u5", "u6", "u7"]) expect(ids.add(id)).toBe(true);
    expect(ids.add("u1")).toBe(true); // dropped with its generation
    expect(ids.add("a.1")).toBe(true);
    expect(ids.add("b.1")).toBe(true);
    expect(ids.add("c.1")).toBe(true); // a third prefix evicts the least recently used ("a")
    expect(ids.add("b.1")).toBe(false);
    expect(ids.add("a.1")).toBe(true);
  });

  it("refuses a window that is not a power of two", () => {
    expect(() => new RecentIds(10, 100)).toThrow(RangeError);
  });
});
