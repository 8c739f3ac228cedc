import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LinkChangedSchema, LinkChangeKind } from "../../gen/switchboard/events/v1/events_pb.js";
import { openMemoryEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { unavailable } from "../../platform/errors.js";
import type { Cache } from "../../platform/ports/cache.js";
import { MemoryLinkStore } from "../links/adapters/memory-link-store.js";
import type { Link } from "../links/ports.js";
import { LINK_FENCE } from "../links/shared-cache.js";
import { decode, encode, LinkResolver } from "./resolver.js";
import { linkChangedSubject } from "./subjects.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const link = (code: string, longUrl = `https://example.com/${code}`, extra: Partial<Link> = {}): Link => ({
  code,
  longUrl,
  ownerId: "u1",
  createdAt: new Date(),
  redirectType: 302,
  ...extra,
});

/** Counts store reads. */
class CountingStore extends MemoryLinkStore {
  gets = 0;
  override async get(code: string) {
    this.gets++;
    return super.get(code);
  }
}

describe("LinkResolver", () => {
  let engine: Engine;
  let store: CountingStore;
  let resolver: LinkResolver;
  beforeEach(() => {
    engine = openMemoryEngine(silentLog);
    store = new CountingStore();
    resolver = new LinkResolver(engine.cache, store).listen(engine.bus);
  });
  afterEach(async () => {
    resolver.close();
    await engine.close();
  });

  it("DB hit, then near-cache hit (peek is synchronous), without touching the store again", async () => {
    await store.insertIfAbsent(link("abc"));
    expect(resolver.peek("abc")).toBeUndefined();
    const v = await resolver.resolve("abc");
    expect(v).toMatchObject({ found: true, longUrl: "https://example.com/abc", redirectType: 302, expiresAt: Infinity });
    expect(resolver.stats.dbHits).toBe(1);
    expect(resolver.peek("abc")).toMatchObject({ found: true, longUrl: "https://example.com/abc" });
    await resolver.resolve("abc");
    expect(store.gets).toBe(1);
    expect(resolver.stats.lruHits).toBe(2);
  });

  it("Redis hit: a second resolver (another process) reads the shared cache, not the store", async () => {
    await store.insertIfAbsent(link("shared", "https://example.com/s", { expiresAt: new Date(Date.now() + 60_000) }));
    await resolver.resolve("shared");
    await sleep(5); // the Redis write is in the background
    const other = new LinkResolver(engine.cache, store);
    const v = await other.resolve("shared");
    expect(v).toMatchObject({ found: true, longUrl: "https://example.com/s" });
    expect(other.stats.redisHits).toBe(1);
    expect(store.gets).toBe(1);
    other.close();
  });

  it("caches unknown codes negatively (short TTL) at both levels", async () => {
    const r = new LinkResolver(engine.cache, store, { negativeTtlMs: 100 });
    expect(await r.resolve("nope")).toEqual({ found: false, code: "nope" });
    expect(await r.resolve("nope")).toEqual({ found: false, code: "nope" });
    expect(store.gets).toBe(1);
    expect(await engine.cache.get("sb:link:nope")).toBe("-");
    await store.insertIfAbsent(link("nope"));
    await sleep(150);
    expect(await r.resolve("nope")).toMatchObject({ found: true });
    r.close();
  });

  it("LinkChanged over the bus drops the near-cache entry and fences the Redis entry", async () => {
    await store.insertIfAbsent(link("chg", "https://old.example/"));
    await resolver.resolve("chg");
    await sleep(5);
    expect(await engine.cache.get("sb:link:chg")).toBeDefined();
    await store.delete("chg");
    await store.insertIfAbsent(link("chg", "https://new.example/"));
    engine.bus.publish(
      linkChangedSubject("chg"),
      toBinary(LinkChangedSchema, create(LinkChangedSchema, { code: "chg", kind: LinkChangeKind.UPDATED, version: 2n })),
    );
    await sleep(5);
    expect(resolver.peek("chg")).toBeUndefined();
    expect(await engine.cache.get("sb:link:chg")).toBe(LINK_FENCE);
    expect(await resolver.resolve("chg")).toMatchObject({ longUrl: "https://new.example/" });
  });

  it("a CREATED event clears a negative entry", async () => {
    await resolver.resolve("late");
    await store.insertIfAbsent(link("late"));
    expect(resolver.peek("late")).toEqual({ found: false, code: "late" });
    engine.bus.publish(
      linkChangedSubject("late"),
      toBinary(LinkChangedSchema, create(LinkChangedSchema, { code: "late", kind: LinkChangeKind.CREATED, version: 1n })),
    );
    await sleep(5);
    expect(await resolver.resolve("late")).toMatchObject({ found: true });
  });

  it("ignores a LinkChanged older than the cached version", async () => {
    await store.insertIfAbsent(link("v", "https://v3.example/", { version: 3 }));
    await resolver.resolve("v");
    resolver.invalidate("v", 2);
    expect(resolver.peek("v")).toMatchObject({ version: 3 });
    resolver.invalidate("v", 3);
    expect(resolver.peek("v")).toBeUndefined();
  });

  it("a lookup in flight during an invalidation does not repopulate the caches", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = new (class extends MemoryLinkStore {
      override async get(code: string) {
        const v = await super.get(code);
        await gate;
        return v;
      }
    })();
    await slow.insertIfAbsent(link("race", "https://old.example/"));
    const r = new LinkResolver(engine.cache, slow);
    const p = r.resolve("race");
    await sleep(5);
    r.invalidate("race");
    release();
    expect(await p).toMatchObject({ longUrl: "https://old.example/" });
    await sleep(5);
    expect(r.peek("race")).toBeUndefined();
    expect(await engine.cache.get("sb:link:race")).toBe(LINK_FENCE);
    r.close();
  });

  it("a fenced entry is answered from the database and never overwritten by a late fill", async () => {
    await store.insertIfAbsent(link("fenced", "https://new.example/"));
    await engine.cache.set("sb:link:fenced", LINK_FENCE, 10_000);
    expect(await resolver.resolve("fenced")).toMatchObject({ longUrl: "https://new.example/" });
    await sleep(5);
    expect(await engine.cache.get("sb:link:fenced")).toBe(LINK_FENCE);
    // A reader of another process that read the old row before the change: its fill loses to the fence.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = new (class extends MemoryLinkStore {
      override async get(code: string) {
        const v = await super.get(code);
        await gate;
        return v;
      }
    })();
    await slow.insertIfAbsent(link("late-fill", "https://old.example/"));
    const other = new LinkResolver(engine.cache, slow);
    const p = other.resolve("late-fill");
    await sleep(5);
    await engine.cache.set("sb:link:late-fill", LINK_FENCE, 10_000); // the shortener's fence
    release();
    await p;
    await sleep(5);
    expect(await engine.cache.get("sb:link:late-fill")).toBe(LINK_FENCE);
    other.close();
  });

  it("drops the near-cache when the bus disconnects and reconnects; while down entries live briefly", async () => {
    let t = 1_000_000;
    let notify: (up: boolean) => void = () => {};
    const bus = Object.assign(Object.create(engine.bus) as typeof engine.bus, {
      subscribe: engine.bus.subscribe.bind(engine.bus),
      onConnectionChange: (l: (up: boolean) => void) => {
        notify = l;
        l(true);
        return () => {};
      },
    });
    const r = new LinkResolver(engine.cache, store, { now: () => t, disconnectedLruTtlMs: 500 }).listen(bus);
    await store.insertIfAbsent(link("nc", "https://one.example/"));
    await r.resolve("nc");
    expect(r.peek("nc")).toBeDefined();
    notify(false);
    expect(r.size).toBe(0);
    await r.resolve("nc");
    t += 400;
    expect(r.peek("nc")).toBeDefined();
    t += 200;
    expect(r.peek("nc")).toBeUndefined();
    await r.resolve("nc");
    notify(true);
    expect(r.size).toBe(0);
    await r.resolve("nc");
    t += 30_000;
    expect(r.peek("nc")).toBeDefined();
    r.close();
  });

  it("keeps the near-cache bounded (least recently used goes first)", async () => {
    const r = new LinkResolver(engine.cache, store, { lruMaxEntries: 3 });
    for (const c of ["a", "b", "c"]) await store.insertIfAbsent(link(c));
    await store.insertIfAbsent(link("d"));
    for (const c of ["a", "b", "c"]) await r.resolve(c);
    r.peek("a"); // a is now most recent
    await r.resolve("d");
    expect(r.size).toBe(3);
    expect(r.peek("b")).toBeUndefined();
    expect(r.peek("a")).toBeDefined();
    r.close();
  });

  it("near-cache entries expire after their TTL", async () => {
    let now = 1_000_000;
    const r = new LinkResolver(engine.cache, store, { lruTtlMs: 1_000, now: () => now });
    await store.insertIfAbsent(link("t"));
    await r.resolve("t");
    expect(r.peek("t")).toBeDefined();
    now += 1_001;
    expect(r.peek("t")).toBeUndefined();
    r.close();
  });

  it("shares one store read among concurrent misses", async () => {
    await store.insertIfAbsent(link("hot"));
    await Promise.all(Array.from({ length: 20 }, () => resolver.resolve("hot")));
    expect(store.gets).toBe(1);
  });

  it("falls back to the database when Redis fails", async () => {
    const down: Cache = {
      get: () => Promise.reject(unavailable("redis")),
      set: () => Promise.reject(unavailable("redis")),
      setIfAbsent: () => Promise.reject(unavailable("redis")),
      delete: () => Promise.reject(unavailable("redis")),
      increment: () => Promise.reject(unavailable("redis")),
    };
    const r = new LinkResolver(down, store);
    await store.insertIfAbsent(link("db"));
    expect(await r.resolve("db")).toMatchObject({ found: true, longUrl: "https://example.com/db" });
    expect(r.stats.redisErrors).toBeGreaterThan(0);
    r.close();
  });

  it("propagates a database failure", async () => {
    const broken = new (class extends MemoryLinkStore {
      override async get(): Promise<Link | undefined> {
        throw unavailable("cassandra");
      }
    })();
    const r = new LinkResolver(engine.cache, broken);
    await expect(r.resolve("x")).rejects.toMatchObject({ kind: "Unavailable" });
    r.close();
  });

  it("encodes and decodes cache values", () => {
    const v = { found: true as const, code: "c", longUrl: "https://x/", redirectType: 301 as const, expiresAt: 5, ownerId: "o", version: 2, createdAtMs: 1_700_000_000_123 };
    expect(decode("c", encode(v))).toEqual(v);
    expect(decode("c", encode({ ...v, expiresAt: Infinity }))).toEqual({ ...v, expiresAt: Infinity });
    expect(decode("c", "-")).toEqual({ found: false, code: "c" });
    expect(decode("c", "garbage")).toBeUndefined();
    // Written by a process that did not know the link's creation time: a miss, not a guess.
    expect(decode("c", JSON.stringify(["https://x/", 301, 5, "o", 2]))).toBeUndefined();
  });

  it("a CREATED event replaces a cached link whatever its version (deleted and registered again)", async () => {
    await store.insertIfAbsent(link("again", "https://first-owner.example/", { version: 4 }));
    expect(await resolver.resolve("again")).toMatchObject({ ownerId: "u1", version: 4 });
    // The DELETED event was lost; the new owner's link starts again at version 1.
    await store.delete("again");
    await store.insertIfAbsent(link("again", "https://second-owner.example/", { ownerId: "u2" }));
    engine.bus.publish(
      linkChangedSubject("again"),
      toBinary(LinkChangedSchema, create(LinkChangedSchema, { code: "again", kind: LinkChangeKind.CREATED, version: 1n })),
    );
    await sleep(5);
    expect(await resolver.resolve("again")).toMatchObject({ ownerId: "u2", longUrl: "https://second-owner.example/" });
  });

  it("tells invalidation listeners after the code is dropped, so they read the new state", async () => {
    await store.insertIfAbsent(link("lst", "https://old.example/"));
    await resolver.resolve("lst");
    const seen: string[] = [];
    const off = resolver.onInvalidate((code) => {
      seen.push(`${code}:${resolver.peek(code) === undefined ? "dropped" : "cached"}`);
    });
    resolver.invalidate("lst");
    resolver.invalidate("lst", 0);
    off();
    resolver.invalidate("lst");
    expect(seen).toEqual(["lst:dropped", "lst:dropped"]);
  });
});
