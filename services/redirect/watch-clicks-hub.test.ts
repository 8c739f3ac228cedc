// The WatchClicks hub on the memory engine, without servers: clicks arrive as ClickBatches on
// the bus (as the gateway publishes them), links change as the shortener announces it.
import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ClickBatchSchema,
  ClickEventSchema,
  LinkChangedSchema,
  LinkChangeKind,
  type ClickEvent,
} from "../../gen/switchboard/events/v1/events_pb.js";
import { openMemoryEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import type { EventBus } from "../../platform/ports/event-bus.js";
import { MemoryLinkStore } from "../links/adapters/memory-link-store.js";
import type { Link } from "../links/ports.js";
import { LinkResolver } from "./resolver.js";
import { clickBatchSubject, linkChangedSubject } from "./subjects.js";
import { ClickWatchHub, type LinkIdentity } from "./watch-clicks.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let engine: Engine;
let store: MemoryLinkStore;
let resolver: LinkResolver;
let hub: ClickWatchHub;
let subscriptions: number;
let eventSeq = 0;

/** Counts live subscriptions on the bus. */
function countingBus(bus: EventBus): EventBus {
  return new Proxy(bus, {
    get(target, prop, receiver) {
      if (prop !== "subscribe") return Reflect.get(target, prop, receiver) as unknown;
      return (subject: string, handler: Parameters<EventBus["subscribe"]>[1]) => {
        subscriptions++;
        const off = target.subscribe(subject, handler);
        let done = false;
        return () => {
          if (!done) subscriptions--;
          done = true;
          off();
        };
      };
    },
  });
}

beforeEach(() => {
  engine = openMemoryEngine(silentLog);
  store = new MemoryLinkStore();
  resolver = new LinkResolver(engine.cache, store).listen(engine.bus);
  subscriptions = 0;
  hub = new ClickWatchHub(countingBus(engine.bus), resolver, store, { maxPerCaller: 4 });
});
afterEach(async () => {
  hub.close();
  resolver.close();
  await engine.close();
});

async function addLink(code: string, ownerId: string, createdAt = new Date()): Promise<Link> {
  const link: Link = { code, longUrl: `https://example.com/${ownerId}/${code}`, ownerId, createdAt, redirectType: 302, custom: true };
  expect(await store.insertIfAbsent(link)).toBe(true);
  announce(code, LinkChangeKind.CREATED, 1n);
  return link;
}
async function deleteLink(code: string): Promise<void> {
  expect(await store.delete(code)).toBe(true);
  announce(code, LinkChangeKind.DELETED, 2n);
}
function announce(code: string, kind: LinkChangeKind, version: bigint): void {
  engine.bus.publish(linkChangedSubject(code), toBinary(LinkChangedSchema, create(LinkChangedSchema, { code, kind, version })));
}
/** Unstamped clicks, as a gateway that predates the link stamp publishes them. */
function clicks(...codes: string[]): void {
  publish(codes.map((code) => ({ code, referrer: `${code}.ref` })));
}
/** Clicks as the redirect door publishes them: each stamped with the link it redirected through. */
function stampedClicks(...links: Link[]): void {
  publish(
    links.map((l) => ({
      code: l.code,
      referrer: `${l.ownerId}.${l.code}.ref`,
      linkOwnerId: l.ownerId,
      linkCreateTimeMs: BigInt(l.createdAt.getTime()),
    })),
  );
}
function publish(events: { code: string; referrer: string; linkOwnerId?: string; linkCreateTimeMs?: bigint }[]): void {
  const batch = create(ClickBatchSchema, {
    clicks: events.map((e) => create(ClickEventSchema, { eventId: `e${++eventSeq}`, gatewayId: "gw-1", ...e })),
  });
  engine.bus.publish(clickBatchSubject("gw-1"), toBinary(ClickBatchSchema, batch));
}
/**
 * The code now names another link in the store, but this process has not heard of it (on the
 * cluster engine the shortener's LinkChanged may arrive after a gateway's click): nothing is
 * announced, so the hub's cache keeps what it held.
 */
async function replaceUnannounced(old: Link, ownerId: string): Promise<Link> {
  expect(await store.delete(old.code)).toBe(true);
  const link: Link = { ...old, ownerId, longUrl: `https://example.com/${ownerId}/${old.code}`, createdAt: new Date() };
  expect(await store.insertIfAbsent(link)).toBe(true);
  return link;
}
const identity = (l: Link): LinkIdentity => ({ code: l.code, ownerId: l.ownerId, createdAtMs: l.createdAt.getTime() });

/** Reads a stream in the background: what it got and how it ended. */
function reader(callerId: string, link?: LinkIdentity) {
  const ac = new AbortController();
  const stream = hub.watch(callerId, link);
  const got: ClickEvent[] = [];
  let ended: unknown = "open";
  const done = (async () => {
    try {
      for await (const c of stream.clicks(ac.signal)) got.push(c);
      ended = "closed";
    } catch (e) {
      ended = e;
    } finally {
      stream.close();
    }
  })();
  return {
    got,
    ended: () => ended,
    async stop() {
      ac.abort();
      await done;
    },
  };
}

describe("ClickWatchHub", () => {
  it("holds one bus subscription for any number of streams, and none when no stream is open", async () => {
    expect(subscriptions).toBe(0);
    await addLink("h1", "alice");
    const readers = ["alice", "bob", "carol", "dave", "erin"].flatMap((u) => [reader(u), reader(u)]);
    expect(subscriptions).toBe(1);
    expect(hub.size).toBe(10);
    await Promise.all(readers.map((r) => r.stop()));
    expect(hub.size).toBe(0);
    expect(subscriptions).toBe(0);
  });

  it("delivers each click to the streams of the link's owner only, gateway id cleared", async () => {
    await addLink("mine", "alice");
    await addLink("theirs", "bob");
    const all = reader("alice");
    const single = reader("alice", identity((await store.get("mine"))!));
    const bobs = reader("bob");
    await sleep(5);
    clicks("mine", "theirs", "unknown-code", "mine");
    for (let i = 0; i < 50 && all.got.length < 2; i++) await sleep(10);
    await sleep(20);
    expect(all.got.map((c) => [c.code, c.gatewayId])).toEqual([["mine", ""], ["mine", ""]]);
    expect(single.got.map((c) => c.code)).toEqual(["mine", "mine"]);
    expect(bobs.got.map((c) => c.code)).toEqual(["theirs"]);
    await Promise.all([all, single, bobs].map((r) => r.stop()));
  });

  it("finding 3: after alice deletes x and bob registers x, alice gets none of bob's clicks and her x stream ends NotFound", async () => {
    const alices = await addLink("x", "alice", new Date(Date.now() - 60_000));
    const all = reader("alice");
    const single = reader("alice", identity(alices));
    await sleep(5);
    clicks("x");
    for (let i = 0; i < 50 && single.got.length < 1; i++) await sleep(10);
    expect(single.got.map((c) => c.referrer)).toEqual(["x.ref"]);

    await deleteLink("x");
    await addLink("x", "bob");
    const bobs = reader("bob");
    await sleep(5);
    clicks("x", "x");
    for (let i = 0; i < 50 && bobs.got.length < 2; i++) await sleep(10);
    await sleep(20);
    expect(bobs.got).toHaveLength(2);
    expect(all.got).toHaveLength(1); // only the click before the delete
    expect(single.got).toHaveLength(1);
    expect(single.ended()).toMatchObject({ kind: "NotFound" });
    expect(all.ended()).toBe("open");
    await Promise.all([all, single, bobs].map((r) => r.stop()));
  });

  it("a stream bound to alice's x ignores bob's x even when the DELETED event was lost", async () => {
    const alices = await addLink("lost", "alice", new Date(Date.now() - 60_000));
    const single = reader("alice", identity(alices));
    await sleep(5);
    expect(await store.delete("lost")).toBe(true); // no announcement
    await store.insertIfAbsent({ ...alices, ownerId: "bob", createdAt: new Date() });
    // Bob's CREATED reaches the resolver; bob's click is withheld and the stream ends.
    resolver.invalidate("lost");
    clicks("lost");
    for (let i = 0; i < 50 && single.ended() === "open"; i++) await sleep(10);
    expect(single.got).toHaveLength(0);
    expect(single.ended()).toMatchObject({ kind: "NotFound" });
  });

  it("ends a single-code stream on the LinkChanged event itself, before any click", async () => {
    const l = await addLink("gone", "alice");
    const single = reader("alice", identity(l));
    await sleep(5);
    await deleteLink("gone");
    for (let i = 0; i < 50 && single.ended() === "open"; i++) await sleep(10);
    expect(single.ended()).toMatchObject({ kind: "NotFound" });
  });

  it("a lagging cache withholds a click but does not end a stream whose link is still there", async () => {
    const l = await addLink("lag", "alice");
    const single = reader("alice", identity(l));
    await sleep(5);
    // The near-cache holds another incarnation (as if a LinkChanged had not arrived yet).
    await resolver.resolve("lag");
    (resolver as unknown as { lru: Map<string, { value: object; until: number }> }).lru.set("lag", {
      value: { ...resolver.peek("lag")!, createdAtMs: 1 },
      until: Date.now() + 60_000,
    });
    clicks("lag");
    await sleep(30);
    expect(single.got).toHaveLength(0);
    expect(single.ended()).toBe("open");
    resolver.invalidate("lag");
    clicks("lag");
    for (let i = 0; i < 50 && single.got.length < 1; i++) await sleep(10);
    expect(single.got).toHaveLength(1);
    await single.stop();
  });

  it("cluster interleaving: the hub's cache still holds alice's x when clicks stamped with bob's x arrive: alice gets none, her x stream ends NotFound", async () => {
    const alices = await addLink("x", "alice", new Date(Date.now() - 60_000));
    const all = reader("alice");
    const single = reader("alice", identity(alices));
    await sleep(5);
    expect(await resolver.resolve("x")).toMatchObject({ ownerId: "alice" });
    const bobs = await replaceUnannounced(alices, "bob");
    const bobAll = reader("bob");
    const bobSingle = reader("bob", identity(bobs));
    await sleep(5);
    stampedClicks(bobs, bobs);
    for (let i = 0; i < 50 && (bobAll.got.length < 2 || single.ended() === "open"); i++) await sleep(10);
    await sleep(20);
    // The cache never learned of the change: the stamp alone kept bob's clicks from alice.
    expect(resolver.peek("x")).toMatchObject({ ownerId: "alice", createdAtMs: alices.createdAt.getTime() });
    expect(all.got).toHaveLength(0);
    expect(single.got).toHaveLength(0);
    expect(single.ended()).toMatchObject({ kind: "NotFound" });
    expect(all.ended()).toBe("open");
    // What bob sees carries no stamp and no gateway id (internal).
    const seen = (r: ReturnType<typeof reader>) => r.got.map((c) => [c.referrer, c.linkOwnerId, c.linkCreateTimeMs, c.gatewayId]);
    expect(seen(bobAll)).toEqual([["bob.x.ref", "", 0n, ""], ["bob.x.ref", "", 0n, ""]]);
    expect(seen(bobSingle)).toEqual(seen(bobAll));
    await Promise.all([all, bobAll, bobSingle].map((r) => r.stop()));
  });

  it("a late click stamped with alice's old x reaches alice, not bob, and does not end bob's x stream", async () => {
    // Redirected (by a gateway whose cache lagged) to alice's target after bob registered x.
    const alices = await addLink("late", "alice", new Date(Date.now() - 60_000));
    const aliceAll = reader("alice");
    await deleteLink("late");
    const bobs = await addLink("late", "bob");
    const bobAll = reader("bob");
    const bobSingle = reader("bob", identity(bobs));
    await sleep(5);
    expect(await resolver.resolve("late")).toMatchObject({ ownerId: "bob" });
    stampedClicks(alices, bobs);
    for (let i = 0; i < 50 && (aliceAll.got.length < 1 || bobAll.got.length < 1); i++) await sleep(10);
    await sleep(30); // the mismatch on bob's stream is checked against the store meanwhile
    expect(aliceAll.got.map((c) => c.referrer)).toEqual(["alice.late.ref"]);
    expect(bobAll.got.map((c) => c.referrer)).toEqual(["bob.late.ref"]);
    expect(bobSingle.got.map((c) => c.referrer)).toEqual(["bob.late.ref"]);
    expect(bobSingle.ended()).toBe("open");
    await Promise.all([aliceAll, bobAll, bobSingle].map((r) => r.stop()));
  });

  it("an unstamped click (older gateway) is still authorised by the hub's cache", async () => {
    const alices = await addLink("old", "alice", new Date(Date.now() - 60_000));
    const aliceAll = reader("alice");
    await sleep(5);
    await resolver.resolve("old");
    const bobs = await replaceUnannounced(alices, "bob");
    const bobAll = reader("bob");
    const bobSingle = reader("bob", identity(bobs));
    await sleep(5);
    // Without a stamp the cache decides, and it still says alice: the fallback's known limit.
    clicks("old");
    for (let i = 0; i < 50 && aliceAll.got.length < 1; i++) await sleep(10);
    await sleep(20);
    expect(aliceAll.got).toHaveLength(1);
    expect(bobAll.got).toHaveLength(0);
    expect(bobSingle.got).toHaveLength(0);
    // Once the change is heard of, the cache says bob.
    announce("old", LinkChangeKind.CREATED, 1n);
    clicks("old");
    for (let i = 0; i < 50 && bobAll.got.length < 1; i++) await sleep(10);
    await sleep(20);
    expect(bobAll.got.map((c) => c.referrer)).toEqual(["old.ref"]);
    expect(bobSingle.got.map((c) => c.referrer)).toEqual(["old.ref"]);
    expect(aliceAll.got).toHaveLength(1);
    await Promise.all([aliceAll, bobAll, bobSingle].map((r) => r.stop()));
  });

  it("caps streams per caller with ResourceExhausted and frees a slot when one ends", async () => {
    const open = [1, 2, 3, 4].map(() => reader("greedy"));
    expect(() => hub.watch("greedy")).toThrow(expect.objectContaining({ kind: "ResourceExhausted", message: expect.stringMatching(/at most 4/) }));
    const other = reader("someone-else");
    await open[0]!.stop();
    const again = reader("greedy");
    await Promise.all([...open.slice(1), other, again].map((r) => r.stop()));
  });

  it("keeps at most queueMax undelivered clicks for a stream nobody reads", async () => {
    const small = new ClickWatchHub(engine.bus, resolver, store, { maxPerCaller: 1, queueMax: 3 });
    await addLink("slow", "alice");
    const stream = small.watch("alice");
    await sleep(5);
    clicks(...Array.from({ length: 10 }, () => "slow"));
    await sleep(30);
    expect(small.stats).toMatchObject({ delivered: 3, dropped: 7 });
    stream.close();
    small.close();
  });
});
