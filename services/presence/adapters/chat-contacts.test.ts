// ChatContacts on chat's memory store, channels made through the chat use cases: direct peers
// and members of groups up to the fan-out size are contacts, larger groups are not (but count as
// shared channels), a left channel counts for nothing, and lookups are cached for the TTL.
import { describe, expect, it } from "vitest";
import { interceptedStore, testWorld } from "../../chat/test-fixtures.js";
import { ChatContacts } from "./chat-contacts.js";

describe("ChatContacts", () => {
  it("direct peers and small-group members are contacts; large groups and left channels are not", async () => {
    const { chat, store } = testWorld();
    await chat.createDirect("ann", "ben");
    await chat.createGroup("ann", "small", ["cat"], "r1");
    const big = await chat.createGroup("ann", "big", ["dan", "eve"], "r2");
    const left = await chat.createGroup("fay", "left", ["ann"], "r3");
    await chat.leave("ann", left.id);
    const contacts = new ChatContacts(store, { maxGroupMembers: 2, ttlMs: 60_000 });
    expect([...(await contacts.contactsOf("ann"))].sort()).toEqual(["ben", "cat"]);
    expect([...(await contacts.contactsOf("dan"))]).toEqual([]);
    expect((await contacts.channelsOf("dan")).has(big.id)).toBe(true);
    expect((await contacts.channelsOf("ann")).has(big.id)).toBe(true);
    expect((await contacts.channelsOf("ann")).has(left.id)).toBe(false);
  });

  it("caches per user for the TTL (one read per TTL), and shares a lookup in flight", async () => {
    const { chat, store, clock } = testWorld();
    await chat.createDirect("gus", "hal");
    let reads = 0;
    const counted = interceptedStore(store, { userChannels: () => void reads++ });
    const contacts = new ChatContacts(counted, { maxGroupMembers: 100, ttlMs: 1_000, now: clock.now });
    await Promise.all([contacts.contactsOf("gus"), contacts.contactsOf("gus"), contacts.channelsOf("gus")]);
    expect(reads).toBe(1);
    await chat.createDirect("gus", "ivy");
    expect([...(await contacts.contactsOf("gus"))]).toEqual(["hal"]);
    clock.advance(1_000);
    expect([...(await contacts.contactsOf("gus"))].sort()).toEqual(["hal", "ivy"]);
    expect(reads).toBe(2);
  });

  it("reads a group's members once per TTL for all its members' lookups (a login storm of one group)", async () => {
    const { chat, store, clock } = testWorld();
    const members = ["m1", "m2", "m3", "m4"];
    await chat.createGroup("m0", "team", members, "r1");
    let memberReads = 0;
    const counted = interceptedStore(store, { getMembers: () => void memberReads++ });
    const contacts = new ChatContacts(counted, { maxGroupMembers: 100, ttlMs: 1_000, now: clock.now });
    const all = ["m0", ...members];
    const lists = await Promise.all(all.map((u) => contacts.contactsOf(u)));
    lists.forEach((l, i) => expect([...l].sort()).toEqual(all.filter((u) => u !== all[i])));
    expect(memberReads).toBe(1);
    clock.advance(1_000);
    await contacts.contactsOf("m1");
    expect(memberReads).toBe(2);
  });
});
