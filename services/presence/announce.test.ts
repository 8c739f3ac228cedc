// Announcing under a login storm (bench/README.md, "presence"): 1,000 users coming online at once
// must not start 1,000 contacts lookups (Cassandra reads) at once, heartbeats must answer while
// lookups hang, and a full queue drops (counted) instead of growing.
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../platform/config.js";
import { MemoryCache } from "../../platform/engines/memory/memory-cache.js";
import { MemoryPresenceStore } from "./adapters/memory-presence-store.js";
import { Announcer } from "./announcer.js";
import type { Contacts, Transition } from "./ports.js";
import { ANNOUNCE_CONCURRENCY, Presence, type PresenceChange } from "./presence.js";

/** A Contacts port whose lookups wait for `release()`, counting how many run at once. */
function gatedContacts() {
  let gate!: () => void;
  let opened = new Promise<void>((r) => (gate = r));
  const s = {
    running: 0,
    maxRunning: 0,
    lookups: [] as string[],
    release: () => gate(),
    hold: () => (opened = new Promise<void>((r) => (gate = r))),
    port: {
      contactsOf: async (userId: string) => {
        s.lookups.push(userId);
        s.running++;
        s.maxRunning = Math.max(s.maxRunning, s.running);
        await opened;
        s.running--;
        return new Set([`friend-of-${userId}`]);
      },
      channelsOf: async () => new Set<string>(),
    } satisfies Contacts,
  };
  return s;
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("announcing transitions under a login storm", () => {
  it("1,000 simultaneous transitions: at most ANNOUNCE_CONCURRENCY lookups at once, heartbeats answer while they hang, each published once", async () => {
    const contacts = gatedContacts();
    const published: PresenceChange[] = [];
    const presence = new Presence({
      store: new MemoryPresenceStore(),
      contacts: contacts.port,
      limiter: new MemoryCache(),
      config: loadConfig({}).presence,
      publish: (cs) => published.push(...cs),
    });
    const users = Array.from({ length: 1_000 }, (_, i) => `u${i}`);
    // Every lookup is held: the heartbeats must still all answer (announcing is behind them).
    await Promise.all(users.map((u) => presence.heartbeat(u, "phone", false)));
    await tick();
    expect(contacts.maxRunning).toBeGreaterThan(0);
    expect(contacts.maxRunning).toBeLessThanOrEqual(ANNOUNCE_CONCURRENCY);
    expect(published).toHaveLength(0);
    contacts.release();
    await presence.announcer.idle();
    expect(contacts.maxRunning).toBeLessThanOrEqual(ANNOUNCE_CONCURRENCY);
    expect(published.map((c) => c.transition.userId).sort()).toEqual([...users].sort());
    expect(published.every((c) => c.transition.online && c.contactUserIds[0] === `friend-of-${c.transition.userId}`)).toBe(true);
  });

  it("a full queue drops further users' transitions and counts them; a user already waiting costs one lookup, newest state wins", async () => {
    const contacts = gatedContacts();
    const published: PresenceChange[] = [];
    let dropped = 0;
    const a = new Announcer({
      contacts: contacts.port,
      publish: (cs) => published.push(...cs),
      concurrency: 1,
      maxPending: 2,
      stats: { onDropped: (n) => (dropped += n) },
    });
    const t = (userId: string, online: boolean, at: number): Transition => ({ userId, online, lastSeenMs: at, changedAtMs: at });
    a.offer([t("busy", true, 1)]); // taken at once: its lookup hangs
    a.offer([t("x", true, 2), t("y", true, 3), t("z", true, 4)]); // x, y wait; z finds the queue full
    a.offer([t("x", false, 5), t("x", true, 0)]); // x again: replaces its pending one if newer
    expect(dropped).toBe(1);
    expect(a.queued).toBe(2);
    contacts.release();
    await a.idle();
    expect(contacts.lookups).toEqual(["busy", "x", "y"]);
    expect(published.map((c) => `${c.transition.userId}:${c.transition.online ? "on" : "off"}`)).toEqual(["busy:on", "x:off", "y:on"]);
  });
});
