import { expect, it } from "vitest";
import { openMemoryEngine } from "../../../platform/engine.js";
import { silentLog } from "../../../platform/engines/log.js";
import { linkStoreConformance } from "../link-store.conformance.js";
import { createLinkStore } from "../store.js";
import { MemoryLinkStore } from "./memory-link-store.js";

linkStoreConformance(async () => ({ store: new MemoryLinkStore(), cleanup: async () => {} }));

it("createLinkStore shares one memory store per engine (shortener and redirect see the same links)", async () => {
  const engine = openMemoryEngine(silentLog);
  const a = await createLinkStore(engine);
  const b = await createLinkStore(engine);
  const link = { code: "abc1234", longUrl: "https://x.org", ownerId: "u", createdAt: new Date(), redirectType: 302 as const };
  await a.insertIfAbsent(link);
  expect(await b.get("abc1234")).toEqual(link);
  const other = await createLinkStore(openMemoryEngine(silentLog));
  expect(await other.get("abc1234")).toBeUndefined();
});

it("an alias removed by expiry (30 days after expiresAt) frees its folded form", async () => {
  let now = Date.parse("2025-01-01T00:00:00Z");
  const store = new MemoryLinkStore(() => now);
  const base = { longUrl: "https://x.org", ownerId: "u", createdAt: new Date(now), redirectType: 302 as const };
  expect(await store.insertIfAbsent({ ...base, code: "promo-2025", expiresAt: new Date(now + 1000) })).toBe(true);
  expect(await store.insertIfAbsent({ ...base, code: "PROMO-2025" })).toBe(false);
  now += 1000 + 30 * 24 * 3600 * 1000;
  expect(await store.insertIfAbsent({ ...base, code: "PROMO-2025" })).toBe(true);
  expect(await store.get("promo-2025")).toBeUndefined();
});
