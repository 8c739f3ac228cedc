// Update and delete are acknowledged only once the shared cache entry is fenced; with the cache
// unreachable they fail with Unavailable and change nothing.
import { describe, expect, it } from "vitest";
import { isDomainError } from "../../platform/errors.js";
import { MemoryCache } from "../../platform/engines/memory/memory-cache.js";
import type { Cache } from "../../platform/ports/cache.js";
import { MemoryLinkStore } from "../links/adapters/memory-link-store.js";
import { cacheFence, LINK_FENCE } from "../links/shared-cache.js";
import { Shortener } from "./service.js";

class SwitchableCache extends MemoryCache {
  down = false;
  override async set(key: string, value: string, ttlMs: number): Promise<void> {
    if (this.down) throw new Error("connect ECONNREFUSED");
    return super.set(key, value, ttlMs);
  }
}

function setup(cache: Cache) {
  const store = new MemoryLinkStore();
  const s = new Shortener({
    store,
    codes: { next: async () => "unused0" },
    policy: { ownHosts: ["sb.example"], blockedDomains: new Set() },
    linkCache: cacheFence(cache, { retryMs: 1 }),
  });
  return { store, s };
}

const failure = async (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe("Shortener: invalidation before acknowledgement", () => {
  it("an update and a delete leave the fence in the shared cache when they answer", async () => {
    const cache = new SwitchableCache();
    const { s } = setup(cache);
    await s.create("u", { longUrl: "https://old.example/", customAlias: "fence-a" });
    await cache.set("sb:link:fence-a", "stale entry", 3_600_000);
    await s.update("u", "fence-a", { paths: ["long_url"], longUrl: "https://new.example/" });
    expect(await cache.get("sb:link:fence-a")).toBe(LINK_FENCE);
    await cache.set("sb:link:fence-a", "stale entry", 3_600_000);
    await s.delete("u", "fence-a");
    expect(await cache.get("sb:link:fence-a")).toBe(LINK_FENCE);
  });

  it("with the shared cache unreachable: Unavailable naming it, and nothing is changed", async () => {
    const cache = new SwitchableCache();
    const { s, store } = setup(cache);
    await s.create("u", { longUrl: "https://old.example/", customAlias: "fence-b" });
    cache.down = true;
    const e = await failure(s.update("u", "fence-b", { paths: ["long_url"], longUrl: "https://new.example/" }));
    expect(isDomainError(e) && e.kind).toBe("Unavailable");
    expect((e as Error).message).toMatch(/shared link cache is unreachable.*nothing was changed/);
    expect((await store.get("fence-b"))?.longUrl).toBe("https://old.example/");
    const d = await failure(s.delete("u", "fence-b"));
    expect(isDomainError(d) && d.kind).toBe("Unavailable");
    expect(await store.get("fence-b")).toBeDefined();
    cache.down = false;
    await s.delete("u", "fence-b");
    expect(await store.get("fence-b")).toBeUndefined();
  });
});
