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
