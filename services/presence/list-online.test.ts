import { describe, expect, it } from "vitest";
import { loadConfig } from "../../platform/config.js";
import { MemoryCache } from "../../platform/engines/memory/memory-cache.js";
import { MemoryPresenceStore } from "./adapters/memory-presence-store.js";
import { Presence } from "./presence.js";

describe("ListOnline (internal: who would not need a push)", () => {
  it("names the requested users that are online, in request order, whoever asks", async () => {
    let now = 1_000_000;
    const presence = new Presence({
      store: new MemoryPresenceStore(),
      contacts: { contactsOf: async () => new Set(), channelsOf: async () => new Set() },
      limiter: new MemoryCache(),
      config: loadConfig({}).presence,
      publish: () => {},
      now: () => now,
    });
    await presence.heartbeat("zoe", "phone", false);
    await presence.heartbeat("adam", "laptop", false);
    await presence.heartbeat("bea", "phone", false);
    // No contact filter here (GetPresence would hide all three from a stranger): internal callers only.
    expect(await presence.online(["bea", "nobody", "zoe", "adam"])).toEqual(["bea", "zoe", "adam"]);
    now += loadConfig({}).presence.timeoutMs + 60_000;
    await presence.sweep();
    expect(await presence.online(["bea", "zoe", "adam"])).toEqual([]);
  });
});
