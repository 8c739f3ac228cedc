/**
 * Two chat servers on one memory engine (shared bus and coordinator tree, like two processes on
 * NATS and ZooKeeper): registry, routing of live events, and what happens when the bus is down.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { MemoryBus } from "../../../platform/engines/memory/memory-bus.js";
import { MemoryCoordinationTree } from "../../../platform/engines/memory/memory-coordinator.js";
import { createLogger } from "../../../platform/logging.js";
import { LocalDelivery } from "../adapters/local-delivery.js";
import { MemoryChatStore } from "../adapters/memory-chat-store.js";
import { Chat, KEPT_MEMBER_RECORDS } from "../chat.js";
import { forgetOnMemberChange, MemberLists } from "../member-lists.js";
import { TestClock, testConfig, testMinter } from "../test-fixtures.js";
import type { LiveStream } from "../ports.js";
import { ChatServerRegistration, watchChatServers, type ChatServerInfo } from "./registry.js";
import { RoutedDelivery } from "./routed-delivery.js";

const log = createLogger({ level: "silent", name: "test" });

class Recorder implements LiveStream {
  readonly events: ChatEvent[] = [];
  constructor(
    readonly userId: string,
    readonly deviceId: string,
  ) {}
  push(e: ChatEvent): void {
    this.events.push(e);
  }
  messages(): string[] {
    return this.events.filter((e) => e.event.case === "message").map((e) => (e.event.value as { text: string }).text);
  }
}

const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await tick(10);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

describe("chat servers routed over the bus", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function world() {
    const clock = new TestClock(Date.now());
    const store = new MemoryChatStore(clock.now);
    const bus = new MemoryBus(log);
    const tree = new MemoryCoordinationTree();
    cleanups.push(() => bus.close());
    const server = (id: string, worker: number) => {
      const coordinator = tree.session();
      const local = new LocalDelivery();
      // As services/chat/module.ts wires them: a change routed in forgets the channel's kept list.
      const memberLists = new MemberLists({ ttlMs: testConfig().memberListMs, maxMembers: KEPT_MEMBER_RECORDS, now: clock.now });
      const routed = new RoutedDelivery({ local, bus, serverId: id, log, onRouted: forgetOnMemberChange(memberLists) });
      routed.start();
      const seen: ChatServerInfo[][] = [];
      const unwatch = watchChatServers(coordinator, "/t/chat/servers", (s) => {
        seen.push([...s]);
        routed.setServers(s);
      });
      const registration = new ChatServerRegistration({ coordinator, path: "/t/chat/servers", id, address: `10.0.0.${worker}:50054`, streams: () => local.size(), log, refreshMs: 20 });
      const chat = new Chat({ store, ids: testMinter(worker, clock), delivery: routed, config: testConfig(), now: clock.now, memberLists });
      const stop = async () => {
        unwatch();
        await registration.close();
        routed.close();
        coordinator.close();
      };
      cleanups.push(stop);
      return { id, chat, local, routed, registration, seen, coordinator, stop };
    };
    return { clock, store, bus, tree, server };
  }

  it("registers both servers with their load, and each routes to the other", async () => {
    const w = world();
    const a = w.server("a", 1);
    const b = w.server("b", 2);
    await until(() => a.routed.peerCount === 1 && b.routed.peerCount === 1, "both servers to see each other");
    a.local.attach(new Recorder("alice", "a1"));
    b.local.attach(new Recorder("alice", "a2"));
    b.local.attach(new Recorder("bob", "b1"));
    await until(() => (a.seen.at(-1) ?? []).find((s) => s.id === "b")?.streams === 2, "b's load (2 streams) in the registry");
    const last = a.seen.at(-1)!;
    expect(last.map((s) => [s.id, s.address, s.streams, s.draining])).toEqual([
      ["a", "10.0.0.1:50054", 1, false],
      ["b", "10.0.0.2:50054", 2, false],
    ]);
    await b.registration.drain();
    await until(() => a.seen.at(-1)?.find((s) => s.id === "b")?.draining === true, "b draining in the registry");
    await b.stop();
    await until(() => a.routed.peerCount === 0 && a.seen.at(-1)?.length === 1, "b gone from the registry");
  });

  it("a message sent on one server reaches the members' devices on both, each once; the sender's own device is skipped", async () => {
    const w = world();
    const a = w.server("a", 1);
    const b = w.server("b", 2);
    await until(() => a.routed.peerCount === 1 && b.routed.peerCount === 1, "peers");
    const a1 = new Recorder("alice", "a1");
    const a2 = new Recorder("alice", "a2");
    const b1 = new Recorder("bob", "b1");
    const c1 = new Recorder("carol", "c1");
    a.local.attach(a1);
    b.local.attach(a2);
    b.local.attach(b1);
    a.local.attach(c1);
    const { channel } = await a.chat.createDirect("alice", "bob");
    for (let i = 0; i < 20; i++) await (i % 2 ? a : b).chat.send("alice", channel.id, `m${i}`, `hello ${i}`);
    const want = Array.from({ length: 20 }, (_, i) => `hello ${i}`);
    await until(() => b1.messages().length === 20 && a1.messages().length === 20 && a2.messages().length === 20, "all messages everywhere");
    await tick(50);
    expect(b1.messages()).toEqual(want);
    expect(a1.messages()).toEqual(want);
    expect(a2.messages()).toEqual(want);
    expect(c1.events).toEqual([]); // not a member: nothing, on either server
  });

  it("a member removed on one server is out on the other as soon as the change is routed there, though its member list was kept", async () => {
    const w = world();
    const a = w.server("a", 1);
    const b = w.server("b", 2);
    await until(() => a.routed.peerCount === 1 && b.routed.peerCount === 1, "peers");
    const carol = new Recorder("carol", "c1");
    b.local.attach(carol);
    const group = await a.chat.createGroup("alice", "g", ["bob", "carol"], "");
    await b.chat.send("bob", group.id, "m1", "before");
    await until(() => carol.messages().length === 1, "carol's first message");
    await a.chat.removeMember("alice", group.id, "carol");
    await until(() => carol.events.some((e) => e.event.case === "memberChange" && (e.event.value as { kind: number }).kind !== 1), "the removal at carol's device");
    // No time passed (the test clock stands still): only the routed change can have told b.
    await b.chat.send("bob", group.id, "m2", "after");
    await expect(b.chat.send("carol", group.id, "c1", "still here?")).rejects.toMatchObject({ kind: "NotFound" });
    await tick(50);
    expect(carol.messages()).toEqual(["before"]);
  });

  it("with the bus down, a kept member list is used for at most memberListMs after a change on another server", async () => {
    const w = world();
    const a = w.server("a", 1);
    const b = w.server("b", 2);
    await until(() => a.routed.peerCount === 1 && b.routed.peerCount === 1, "peers");
    const group = await a.chat.createGroup("alice", "g", ["bob", "carol"], "");
    await b.chat.send("carol", group.id, "c1", "kept now");
    w.bus.close();
    await a.chat.removeMember("alice", group.id, "carol");
    // b never heard of it: its kept list still has carol until it expires.
    await expect(b.chat.send("carol", group.id, "c2", "within the ttl")).resolves.toMatchObject({ duplicate: false });
    w.clock.t += testConfig().memberListMs;
    await expect(b.chat.send("carol", group.id, "c3", "after the ttl")).rejects.toMatchObject({ kind: "NotFound" });
  });

  it("sends keep working while the bus is down; the peer's devices miss only the live copy", async () => {
    const w = world();
    const a = w.server("a", 1);
    const b = w.server("b", 2);
    await until(() => a.routed.peerCount === 1, "peers");
    const b1 = new Recorder("bob", "b1");
    b.local.attach(b1);
    const { channel } = await a.chat.createDirect("alice", "bob");
    await until(() => b1.events.length === 1, "the channel-created event at b1");
    w.bus.close();
    const sent = await a.chat.send("alice", channel.id, "m1", "while the bus is down");
    expect(sent.duplicate).toBe(false);
    const page = await b.chat.history("bob", channel.id, { newest: true }, 10);
    expect(page.messages.map((m) => m.text)).toEqual(["while the bus is down"]);
    await tick(50);
    expect(b1.messages()).toEqual([]);
  });
});
