// Presence changes relayed to this chat server's live streams: only to the contacts named in the
// change, as an ephemeral presence event (no id, no cursor).
import { describe, expect, it } from "vitest";
import type { ChatEvent } from "../../gen/switchboard/chat/v1/chat_pb.js";
import { PresenceState } from "../../gen/switchboard/presence/v1/presence_pb.js";
import { openMemoryEngine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { busPublisher } from "../presence/fanout.js";
import { LocalDelivery } from "./adapters/local-delivery.js";
import type { LiveStream } from "./ports.js";
import { relayPresenceToStreams } from "./presence-events.js";

describe("relayPresenceToStreams", () => {
  it("delivers a change to the contacts' streams only", async () => {
    const engine = openMemoryEngine(silentLog);
    const local = new LocalDelivery();
    const got = new Map<string, ChatEvent[]>();
    const stream = (userId: string, deviceId: string): LiveStream => ({
      userId,
      deviceId,
      push: (e) => got.set(`${userId}/${deviceId}`, [...(got.get(`${userId}/${deviceId}`) ?? []), e]),
    });
    for (const s of [stream("bob", "b1"), stream("bob", "b2"), stream("carol", "c1")]) local.attach(s);
    const off = relayPresenceToStreams(engine.bus, local);
    busPublisher(engine.bus, () => {})([
      { transition: { userId: "alice", online: true, lastSeenMs: 1_000, changedAtMs: 1_500 }, contactUserIds: ["bob", "dave"] },
    ]);
    await new Promise((r) => setTimeout(r, 10));
    expect([...got.keys()].sort()).toEqual(["bob/b1", "bob/b2"]);
    const e = got.get("bob/b1")![0]!;
    expect([e.eventId, e.cursor, e.event.case]).toEqual([0n, "", "presence"]);
    const p = e.event.case === "presence" ? e.event.value : undefined;
    expect([p?.userId, p?.state, Number(p?.lastSeenTime?.seconds)]).toEqual(["alice", PresenceState.ONLINE, 1]);
    off();
    await engine.close();
  });
});
