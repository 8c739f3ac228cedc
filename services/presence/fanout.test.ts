// PresenceWatchHub on the memory bus: only contacts named in a PresenceChanged get it, the outbox
// keeps at most one presence per watched user (newest wins, repeats and older ones dropped), and
// the snapshot comes first in request order.
import { describe, expect, it } from "vitest";
import { openMemoryEngine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { busPublisher, PresenceWatchHub } from "./fanout.js";
import type { PresenceView } from "./presence.js";

const flush = () => new Promise((r) => setTimeout(r, 0));

function setup() {
  const engine = openMemoryEngine(silentLog);
  const hub = new PresenceWatchHub(engine.bus, { maxPerCaller: 2 });
  const publish = busPublisher(engine.bus, (what, e) => {
    throw new Error(`${what}: ${String(e)}`);
  });
  const change = (userId: string, online: boolean, at: number, contacts: string[]) =>
    publish([{ transition: { userId, online, lastSeenMs: at - 1, changedAtMs: at }, contactUserIds: contacts }]);
  return { engine, hub, change };
}

async function take(it: AsyncGenerator<PresenceView>, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    if (r.done) break;
    out.push(`${r.value.userId}:${r.value.state}`);
  }
  return out;
}

describe("PresenceWatchHub", () => {
  it("delivers a transition only to watchers named as contacts", async () => {
    const { engine, hub, change } = setup();
    const bob = hub.watch("bob", ["alice"]);
    const carol = hub.watch("carol", ["alice"]);
    const unknown = (userId: string): PresenceView => ({ userId, state: "unknown", changedAtMs: -1 });
    bob.start([unknown("alice")]);
    carol.start([unknown("alice")]);
    const ac = new AbortController();
    const bobIt = bob.views(ac.signal);
    const carolIt = carol.views(ac.signal);
    expect(await take(bobIt, 1)).toEqual(["alice:unknown"]);
    expect(await take(carolIt, 1)).toEqual(["alice:unknown"]);
    change("alice", true, 100, ["bob"]);
    await flush();
    expect(await take(bobIt, 1)).toEqual(["alice:online"]);
    // carol got nothing: her next read waits; a change naming her comes through, the earlier did not.
    change("alice", false, 200, ["bob", "carol"]);
    await flush();
    expect(await take(carolIt, 1)).toEqual(["alice:offline"]);
    ac.abort();
    hub.close();
    await engine.close();
  });

  it("keeps one pending presence per user: newest wins, older and repeated states are dropped", async () => {
    const { engine, hub, change } = setup();
    const w = hub.watch("bob", ["alice", "dave"]);
    w.start([
      { userId: "alice", state: "offline", lastSeenMs: 1, changedAtMs: 10 },
      { userId: "dave", state: "offline", lastSeenMs: 1, changedAtMs: 10 },
    ]);
    for (let i = 0; i <= 1_000; i++) change("alice", i % 2 === 0, 100 + i, ["bob"]);
    change("dave", false, 5, ["bob"]); // older than the snapshot
    change("dave", false, 50, ["bob"]); // newer, same state: nothing to tell
    await flush();
    const ac = new AbortController();
    const it = w.views(ac.signal);
    // 1,001 changes of alice left one pending presence, her newest (it moved behind dave's snapshot).
    expect(await take(it, 2)).toEqual(["dave:offline", "alice:online"]);
    const next = it.next();
    const raced = await Promise.race([next.then(() => "more"), flush().then(() => "waiting")]);
    expect(raced).toBe("waiting");
    ac.abort();
    hub.close();
    await engine.close();
  });

  it("caps concurrent watches per caller; closing one frees a slot", async () => {
    const { engine, hub } = setup();
    const a = hub.watch("erin", ["x"]);
    hub.watch("erin", ["y"]);
    expect(() => hub.watch("erin", ["z"])).toThrow(/too many WatchPresence streams/);
    hub.watch("frank", ["z"]);
    a.close();
    expect(() => hub.watch("erin", ["z"])).not.toThrow();
    hub.close();
    await engine.close();
  });
});
