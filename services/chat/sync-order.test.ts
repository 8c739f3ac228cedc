/**
 * Forced out-of-order persistence (issue 9, Build 4): two chat servers mint ids from distinct
 * workers and persist in the opposite order; a device Syncing in between must still end with
 * every message, none twice after dedupe by event_id. Also the re-mint and re-announce rules.
 */
import { describe, expect, it } from "vitest";
import type { ChatEvent } from "../../gen/switchboard/chat/v1/chat_pb.js";
import { MemoryChatStore } from "./adapters/memory-chat-store.js";
import type { Chat } from "./chat.js";
import { idTimeMs } from "./domain/cursor.js";
import type { MessageRecord } from "./ports.js";
import { TestClock, interceptedStore, testConfig, testServer, testWorld } from "./test-fixtures.js";

const W = testConfig().settleWindowMs;
const T = testConfig().writeTimeoutMs;

const tick = () => new Promise<void>((r) => setImmediate(r));

class SyncingDevice {
  cursor = "";
  readonly seen: ChatEvent[] = [];
  constructor(
    readonly chat: Chat,
    readonly user: string,
    readonly device: string,
  ) {}
  /** Sync until has_more is false; every page is in id order. */
  async sync(pageSize = 0): Promise<void> {
    for (;;) {
      const r = await this.chat.sync(this.user, this.device, this.cursor, pageSize);
      const ids = r.events.map((e) => e.eventId);
      expect([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(ids);
      for (const e of r.events) {
        expect(e.eventId).toBeGreaterThan(0n);
        expect(e.cursor).not.toBe("");
      }
      this.seen.push(...r.events);
      this.cursor = r.nextCursor;
      if (!r.hasMore) return;
    }
  }
  /** Message ids after dedupe by event_id; fails on a message id under two event ids. */
  messageIds(): bigint[] {
    const byEvent = new Map<bigint, ChatEvent>();
    for (const e of this.seen) byEvent.set(e.eventId, e);
    const out = [...byEvent.values()].filter((e) => e.event.case === "message").map((e) => (e.event.value as { messageId: bigint }).messageId);
    expect(new Set(out).size).toBe(out.length);
    return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

describe("Sync with ids persisted out of order", () => {
  it("a message persisted after a larger id was already synced is still returned, once", async () => {
    const clock = new TestClock();
    const shared = new MemoryChatStore(clock.now);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const a = testServer({ clock, worker: 1, store: interceptedStore(shared, { putMessage: () => held }) });
    const b = testServer({ clock, worker: 2, store: shared });
    const { channel } = await b.chat.createDirect("alice", "bob");
    const phone = new SyncingDevice(b.chat, "bob", "phone");
    await phone.sync();
    clock.advance(W * 2);

    const sendA = a.chat.send("alice", channel.id, "m-a", "first, minted first");
    await tick();
    clock.advance(3);
    const sentB = await b.chat.send("alice", channel.id, "m-b", "second, persisted first");
    const idA = a.ids.minted.at(-1)!;
    expect(idA).toBeLessThan(sentB.message.id);

    clock.advance(500);
    await phone.sync();
    expect(phone.messageIds()).toEqual([sentB.message.id]);

    clock.advance(500);
    release();
    const sentA = await sendA;
    expect(sentA.message.id).toBe(idA);

    for (let step = 0; step < 12; step++) {
      clock.advance(1_000);
      await phone.sync();
    }
    expect(phone.messageIds()).toEqual([idA, sentB.message.id]);
  });

  it("randomized: hundreds of sends over two servers with write delays under the settle window; every device ends with every message once", async () => {
    let seed = 0x5eed;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    const clock = new TestClock();
    const shared = new MemoryChatStore(clock.now);
    const pending: { landAt: number; go: () => void }[] = [];
    const delayed = interceptedStore(shared, {
      putMessage: () =>
        new Promise<void>((go) => {
          // Lands within the settle window of its id (minted just before), never later.
          pending.push({ landAt: clock.t + Math.floor(rnd() * (W - T - 10)), go });
        }),
    });
    const servers = [testServer({ clock, worker: 7, store: delayed }), testServer({ clock, worker: 8, store: delayed })];
    const [s0, s1] = servers as [(typeof servers)[0], (typeof servers)[0]];
    const group = await s0.chat.createGroup("u1", "three", ["u2", "u3"], "");
    const direct = (await s1.chat.createDirect("u1", "u2")).channel;
    const direct13 = (await s0.chat.createDirect("u1", "u3")).channel;
    const channels = [
      { id: group.id, members: ["u1", "u2", "u3"] },
      { id: direct.id, members: ["u1", "u2"] },
      { id: direct13.id, members: ["u1", "u3"] },
    ];
    const devices = [
      ["u1", "phone"],
      ["u1", "laptop"],
      ["u2", "phone"],
      ["u3", "phone"],
      ["u3", "tablet"],
    ].map(([u, d]) => new SyncingDevice(servers[Math.floor(rnd() * 2)]!.chat, u!, d!));
    for (const d of devices) await d.sync();

    const sends: Promise<{ message: MessageRecord }>[] = [];
    for (let step = 0; step < 400; step++) {
      clock.advance(1 + Math.floor(rnd() * 40));
      for (const p of pending.filter((x) => x.landAt <= clock.t)) {
        pending.splice(pending.indexOf(p), 1);
        p.go();
      }
      await tick();
      const n = Math.floor(rnd() * 3);
      for (let i = 0; i < n; i++) {
        const ch = channels[Math.floor(rnd() * channels.length)]!;
        const from = ch.members[Math.floor(rnd() * ch.members.length)]!;
        sends.push(servers[Math.floor(rnd() * 2)]!.chat.send(from, ch.id, `c${step}-${i}`, `hello ${step}.${i}`));
      }
      await tick();
      if (rnd() < 0.3) await devices[Math.floor(rnd() * devices.length)]!.sync(1 + Math.floor(rnd() * 20));
    }
    clock.advance(W);
    for (const p of pending.splice(0)) p.go();
    const sent = (await Promise.all(sends)).map((r) => r.message);
    expect(sent.length).toBeGreaterThan(300);
    clock.advance(W + 1);
    for (const d of devices) {
      await d.sync(7);
      const mine = new Set(channels.filter((c) => c.members.includes(d.user)).map((c) => c.id));
      const expected = sent.filter((m) => mine.has(m.channelId)).map((m) => m.id).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      expect(d.messageIds()).toEqual(expected);
    }
  });
});

describe("the settle rules on writes", () => {
  it("a send whose id aged past settle window - write timeout before its write gets a new id", async () => {
    const clock = new TestClock();
    const shared = new MemoryChatStore(clock.now);
    let slow = false;
    const store = interceptedStore(shared, {
      getMembers: () => {
        if (slow) clock.advance(W - T + 1);
      },
    });
    const s = testServer({ clock, store });
    const { channel } = await s.chat.createDirect("alice", "bob");
    const before = s.ids.minted.length;
    slow = true;
    const sent = await s.chat.send("alice", channel.id, "late-1", "slow membership read");
    slow = false;
    const minted = s.ids.minted.slice(before);
    expect(minted).toHaveLength(2);
    expect(sent.message.id).toBe(minted[1]);
    expect(clock.t - idTimeMs(sent.message.id)).toBeLessThanOrEqual(W - T);
    expect(await shared.getMessage(channel.id, minted[0]!)).toBeUndefined();
    expect(await shared.getMessage(channel.id, sent.message.id)).toMatchObject({ text: "slow membership read" });
  });

  it("a send whose claim took longer than settle window - write timeout keeps its id and is re-announced at a fresh id", async () => {
    const clock = new TestClock();
    const shared = new MemoryChatStore(clock.now);
    const store = interceptedStore(shared, { claimClientMessageId: () => clock.advance(W) });
    const s = testServer({ clock, store });
    const { channel } = await testServer({ clock, store: shared, worker: 2 }).chat.createDirect("alice", "bob");
    const phone = new SyncingDevice(s.chat, "bob", "phone");
    await phone.sync();
    clock.advance(10);
    const sent = await s.chat.send("alice", channel.id, "slow-claim", "late");
    const events = await shared.eventsAfter(channel.id, sent.message.id, 10);
    const re = events.find((e) => e.kind === "change" && e.change.kind === "message");
    expect(re?.id).toBeGreaterThan(sent.message.id);
    clock.advance(W + 1);
    await phone.sync();
    // Two events (the late row may or may not be behind the cursor), one message: same message_id.
    const carried = phone.seen.filter((e) => e.event.case === "message").map((e) => (e.event.value as { messageId: bigint }).messageId);
    expect(new Set(carried)).toEqual(new Set([sent.message.id]));
  });

  it("a retry whose first write never landed heals the row (and re-announces it once it is old)", async () => {
    const { chat, store, clock } = testWorld();
    const { channel } = await chat.createDirect("alice", "bob");
    const lost: MessageRecord = { id: (await chat.send("alice", channel.id, "warm", "x")).message.id + 1n, channelId: channel.id, senderId: "alice", clientMessageId: "lost-1", text: "lost write", createdAt: new Date(clock.t), deleted: false };
    expect(await store.claimClientMessageId(lost)).toEqual({ claimed: true });
    clock.advance(W);
    const r = await chat.send("alice", channel.id, "lost-1", "lost write");
    expect(r).toMatchObject({ duplicate: true, message: { id: lost.id, text: "lost write" } });
    expect(await store.getMessage(channel.id, lost.id)).toMatchObject({ text: "lost write" });
    const after = await store.eventsAfter(channel.id, lost.id, 10);
    expect(after.some((e) => e.kind === "change" && e.change.kind === "message")).toBe(true);
  });
});
