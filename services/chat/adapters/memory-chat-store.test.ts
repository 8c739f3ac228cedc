import { expect, it } from "vitest";
import { openMemoryEngine } from "../../../platform/engine.js";
import { silentLog } from "../../../platform/engines/log.js";
import { MemoryCache } from "../../../platform/engines/memory/memory-cache.js";
import { chatStoreConformance, idAt } from "../chat-store.conformance.js";
import { createChatStore } from "../store.js";
import { CLAIM_TTL_MS, MemoryChatStore } from "./memory-chat-store.js";

chatStoreConformance(async () => ({ store: new MemoryChatStore(), cache: new MemoryCache(), cleanup: async () => {} }));

it("createChatStore shares one memory store per engine", async () => {
  const engine = openMemoryEngine(silentLog);
  const a = await createChatStore(engine);
  const b = await createChatStore(engine);
  expect(await a.claimDirect("p", "dm1")).toBe("dm1");
  expect(await b.claimDirect("p", "dm2")).toBe("dm1");
  const other = await createChatStore(openMemoryEngine(silentLog));
  expect(await other.claimDirect("p", "dm3")).toBe("dm3");
});

it("client message id and group request claims expire after 24 h", async () => {
  let now = Date.UTC(2026, 0, 1);
  const store = new MemoryChatStore(() => now);
  const m = { id: idAt(now), channelId: "c", senderId: "u", clientMessageId: "k", text: "hi", createdAt: new Date(now), deleted: false };
  expect((await store.claimClientMessageId(m)).claimed).toBe(true);
  expect(await store.claimGroupRequest("u", "r", { channelId: "g1", requestHash: "h" })).toEqual({ channelId: "g1", requestHash: "h" });
  now += CLAIM_TTL_MS - 1;
  expect((await store.claimClientMessageId({ ...m, id: m.id + 1n })).claimed).toBe(false);
  expect((await store.claimGroupRequest("u", "r", { channelId: "g2", requestHash: "h2" })).channelId).toBe("g1");
  now += 2;
  expect((await store.claimClientMessageId({ ...m, id: m.id + 2n })).claimed).toBe(true);
  expect((await store.claimGroupRequest("u", "r", { channelId: "g3", requestHash: "h3" })).channelId).toBe("g3");
});
