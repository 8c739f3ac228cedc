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
import { Chat } from "../chat.js";
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
      const routed = new RoutedDelivery({ local, bus, serverId: id, log });
      routed.start();
      const seen: ChatServerInfo[][] = [];
      const unwatch = watchChatServers(coordinator, "/t/chat/servers", (s) => {
        seen.push([...s]);
        routed.setServers(s);
      });
      const registration = new ChatServerRegistration({ coordinator, path: "/t/chat/servers", id, address: `10.0.0.${worker}:50054`, streams: () => local.size(), log, refreshMs: 20 });
      const chat = new Chat({ store, ids: testMinter(worker, clock), delivery: routed, config: testConfig(), now: clock.now });
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
