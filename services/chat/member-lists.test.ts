import { describe, expect, it } from "vitest";
import { MemberLists } from "./member-lists.js";
import type { MemberRecord } from "./ports.js";

const member = (userId: string): MemberRecord => ({ userId, role: "member", joinedAt: new Date(0), joinedId: 1n });

/** A store stand-in: the current lists, and how many reads each channel cost. */
function source(lists: Record<string, string[]>) {
  const reads = new Map<string, number>();
  let hold: Promise<void> | undefined;
  return {
    lists,
    reads: (id: string) => reads.get(id) ?? 0,
    holdReads(p: Promise<void> | undefined) {
      hold = p;
    },
    load: (id: string) => async () => {
      reads.set(id, (reads.get(id) ?? 0) + 1);
      const now = (lists[id] ?? []).map(member);
      if (hold) await hold;
      return now;
    },
  };
}

const ids = (ms: readonly MemberRecord[]) => ms.map((m) => m.userId);

describe("MemberLists", () => {
  it("reads a list once per ttl, then again", async () => {
    let t = 0;
    const lists = new MemberLists({ ttlMs: 1_000, maxMembers: 100, now: () => t });
    const src = source({ g: ["alice", "bob"] });
    for (let i = 0; i < 5; i++) expect(ids(await lists.get("g", "alice", src.load("g")))).toEqual(["alice", "bob"]);
    expect(src.reads("g")).toBe(1);
    t = 999;
    await lists.get("g", "bob", src.load("g"));
    expect(src.reads("g")).toBe(1);
    t = 1_000;
    await lists.get("g", "bob", src.load("g"));
    expect(src.reads("g")).toBe(2);
  });

  it("reads again after forget (a membership change)", async () => {
    const lists = new MemberLists({ ttlMs: 60_000, maxMembers: 100 });
    const src = source({ g: ["alice", "bob"] });
    await lists.get("g", "alice", src.load("g"));
    src.lists.g = ["alice"];
    lists.forget("g");
    expect(ids(await lists.get("g", "alice", src.load("g")))).toEqual(["alice"]);
    expect(src.reads("g")).toBe(2);
  });

  it("a caller missing from a kept list is looked up again (someone just added is not refused)", async () => {
    const lists = new MemberLists({ ttlMs: 60_000, maxMembers: 100 });
    const src = source({ g: ["alice"] });
    await lists.get("g", "alice", src.load("g"));
    src.lists.g = ["alice", "dave"];
    expect(ids(await lists.get("g", "dave", src.load("g")))).toEqual(["alice", "dave"]);
    // And the fresher list is the one kept.
    expect(ids(await lists.get("g", "alice", src.load("g")))).toEqual(["alice", "dave"]);
    expect(src.reads("g")).toBe(2);
  });

  it("a caller missing from a read that was already in flight is looked up again", async () => {
    const lists = new MemberLists({ ttlMs: 60_000, maxMembers: 100 });
    const src = source({ g: ["alice"] });
    let release!: () => void;
    src.holdReads(new Promise<void>((r) => (release = r)));
    const alices = lists.get("g", "alice", src.load("g"));
    // Dave is added (on another server, nothing forgotten here) while that read is in flight.
    src.lists.g = ["alice", "dave"];
    src.holdReads(undefined);
    const daves = lists.get("g", "dave", src.load("g"));
    release();
    expect(ids(await alices)).toEqual(["alice"]);
    expect(ids(await daves)).toEqual(["alice", "dave"]);
    expect(src.reads("g")).toBe(2);
  });

  it("does not keep a list read across a forget (it may be the old one)", async () => {
    const lists = new MemberLists({ ttlMs: 60_000, maxMembers: 100 });
    const src = source({ g: ["alice", "carol"] });
    let release!: () => void;
    src.holdReads(new Promise<void>((r) => (release = r)));
    const first = lists.get("g", "alice", src.load("g"));
    // Carol is removed while the read (which saw her) is in flight.
    src.lists.g = ["alice"];
    lists.forget("g");
    release();
    src.holdReads(undefined);
    expect(ids(await first)).toEqual(["alice", "carol"]);
    expect(ids(await lists.get("g", "alice", src.load("g")))).toEqual(["alice"]);
    expect(src.reads("g")).toBe(2);
  });

  it("callers that want a list being read share the one read", async () => {
    const lists = new MemberLists({ ttlMs: 60_000, maxMembers: 100 });
    const src = source({ g: ["alice", "bob"] });
    const all = await Promise.all(["alice", "bob", "alice"].map((u) => lists.get("g", u, src.load("g"))));
    expect(all.map(ids)).toEqual([["alice", "bob"], ["alice", "bob"], ["alice", "bob"]]);
    expect(src.reads("g")).toBe(1);
  });

  it("keeps no empty list (a channel not created yet) and nothing with ttl 0", async () => {
    const src = source({});
    const lists = new MemberLists({ ttlMs: 60_000, maxMembers: 100 });
    await lists.get("new", "alice", src.load("new"));
    await lists.get("new", "alice", src.load("new"));
    expect(src.reads("new")).toBe(2);
    const off = new MemberLists({ ttlMs: 0, maxMembers: 100 });
    const src2 = source({ g: ["alice"] });
    await off.get("g", "alice", src2.load("g"));
    await off.get("g", "alice", src2.load("g"));
    expect(src2.reads("g")).toBe(2);
    expect(off.keptMembers).toBe(0);
  });

  it("keeps at most maxMembers member records, dropping the oldest lists first", async () => {
    const lists = new MemberLists({ ttlMs: 60_000, maxMembers: 5 });
    const src = source({ a: ["u1", "u2"], b: ["u1", "u3"], c: ["u1", "u4", "u5"] });
    for (const id of ["a", "b", "c"]) await lists.get(id, "u1", src.load(id));
    expect(lists.keptMembers).toBe(5);
    await lists.get("a", "u1", src.load("a"));
    await lists.get("b", "u1", src.load("b"));
    await lists.get("c", "u1", src.load("c"));
    // "a" went to make room for "c"; reading "a" again pushed "b" out in turn.
    expect([src.reads("a"), src.reads("b"), src.reads("c")]).toEqual([2, 2, 2]);
    expect(lists.keptMembers).toBeLessThanOrEqual(5);
  });
});
