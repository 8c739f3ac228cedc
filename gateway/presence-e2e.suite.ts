/**
 * Issue 13 acceptance, end to end through one gateway port, run on both engines (the embedded
 * mesh; presence-e2e.test.ts memory, presence-e2e.int.test.ts cluster). Times are the defaults
 * scaled by 1/10 (PRESENCE_E2E_ENV): heartbeat interval 1 s, timeout 3 s, grace 1 s, dwell 2 s;
 * the fan-out size is 2, so a group of three is a "large" group.
 *
 * Users: alice (devices a1, a2), bob (a direct channel with alice: a contact), dave (only in a
 * group of three with alice and erin: not a contact, may read on demand), carol (shares nothing).
 * Only the public contract is used. The tests run in order and share state.
 */
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, describe, expect, it } from "vitest";
import { PresenceService, PresenceState, type UserPresence } from "../gen/switchboard/presence/v1/presence_pb.js";
import { waitFor } from "../testkit/processes.js";
import { bearer, chatClient, LiveDevice, transportFor, withHeaders } from "./chat-wire.js";

export const PRESENCE_E2E_ENV = {
  SWITCHBOARD_PRESENCE_HEARTBEAT_INTERVAL_MS: "1000",
  SWITCHBOARD_PRESENCE_TIMEOUT_MS: "3000",
  SWITCHBOARD_PRESENCE_GRACE_MS: "1000",
  SWITCHBOARD_PRESENCE_MIN_DWELL_MS: "2000",
  SWITCHBOARD_PRESENCE_FANOUT_MAX_GROUP_MEMBERS: "2",
  SWITCHBOARD_PRESENCE_CONTACTS_TTL_MS: "50",
  SWITCHBOARD_PRESENCE_WATCHES_PER_CALLER: "3",
} as const;
const INTERVAL = 1_000;
const TIMEOUT = 3_000;
const GRACE = 1_000;

export interface PresenceE2eTarget {
  readonly baseUrl: string;
  tokenFor(userId: string): string;
}

type PresenceClient = Client<typeof PresenceService>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stateName = (s: PresenceState) => PresenceState[s];

/** One WatchPresence stream and everything it delivered, with arrival times. */
class Watch {
  readonly got: { p: UserPresence; at: number }[] = [];
  end: unknown;
  private readonly abort = new AbortController();
  constructor(client: PresenceClient, userIds: string[]) {
    void (async () => {
      try {
        for await (const m of client.watchPresence({ userIds }, { signal: this.abort.signal })) this.got.push({ p: m.presence!, at: Date.now() });
        this.end = "closed";
      } catch (e) {
        this.end = e;
      }
    })();
  }
  of(userId: string) {
    return this.got.filter((g) => g.p.userId === userId);
  }
  states(userId: string): string[] {
    return this.of(userId).map((g) => stateName(g.p.state));
  }
  stop(): void {
    this.abort.abort();
  }
}

/** A device heartbeating every interval until stopped; remembers when its last beat was sent and answered. */
class Beating {
  lastSentAt = 0;
  lastAnsweredAt = 0;
  private stopped = false;
  private readonly done: Promise<void>;
  constructor(client: PresenceClient, deviceId: string) {
    this.done = (async () => {
      while (!this.stopped) {
        const sent = Date.now();
        try {
          await client.heartbeat({ deviceId });
          this.lastSentAt = sent;
          this.lastAnsweredAt = Date.now();
        } catch {
          // A missed beat is what the timeout is for; the next one comes an interval later.
        }
        await sleep(INTERVAL);
      }
    })();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

export function presenceEndToEndSuite(engine: string, target: () => PresenceE2eTarget): void {
  describe(`presence end to end through the gateway (${engine} engine)`, () => {
    const run = `${engine}-${Date.now().toString(36)}`;
    const ALICE = `alice-${run}`;
    const BOB = `bob-${run}`;
    const CAROL = `carol-${run}`;
    const DAVE = `dave-${run}`;
    const ERIN = `erin-${run}`;
    const NOBODY = `nobody-${run}`;
    const presence = (user: string): PresenceClient =>
      createClient(PresenceService, transportFor("connect-1.1", target().baseUrl, [withHeaders(bearer(target().tokenFor(user)))]));
    const watches: Watch[] = [];
    const watch = (user: string, ids: string[]) => {
      const w = new Watch(presence(user), ids);
      watches.push(w);
      return w;
    };
    let bobWatch: Watch;
    let carolWatch: Watch;
    let daveWatch: Watch;
    let a1: Beating;
    let a2: Beating;
    // Chat streams: presence transitions of contacts ride them too.
    const chatStreams: LiveDevice[] = [];
    const chatStream = (user: string, device: string) => {
      const d = new LiveDevice(user, device, "connect-1.1", () => chatClient(target().baseUrl, "connect-1.1", bearer(target().tokenFor(user)))).start();
      chatStreams.push(d);
      return d;
    };
    const chatStates = (d: LiveDevice, of: string) => d.of("presence").filter((p) => p.userId === of).map((p) => stateName(p.state));
    let bobChat: LiveDevice;
    let carolChat: LiveDevice;
    let daveChat: LiveDevice;
    afterAll(async () => {
      for (const w of watches) w.stop();
      for (const d of chatStreams) d.stop();
      await Promise.allSettled([a1?.stop(), a2?.stop()]);
    });

    it("a contact's watch starts with the current state (unknown: never seen), then sees ONLINE when alice heartbeats", async () => {
      await chatClient(target().baseUrl, "connect-1.1", bearer(target().tokenFor(BOB))).createDirectChannel({ peerUserId: ALICE });
      await chatClient(target().baseUrl, "connect-1.1", bearer(target().tokenFor(ALICE))).createGroupChannel({
        name: "big",
        memberUserIds: [DAVE, ERIN],
        requestId: `g-${run}`,
      });
      bobChat = chatStream(BOB, "b-chat");
      carolChat = chatStream(CAROL, "c-chat");
      daveChat = chatStream(DAVE, "d-chat");
      await waitFor("the chat streams attached", async () => ([bobChat, carolChat, daveChat].every((d) => d.events.length > 0) ? true : undefined), 10_000);
      bobWatch = watch(BOB, [ALICE, CAROL]);
      carolWatch = watch(CAROL, [ALICE]);
      daveWatch = watch(DAVE, [ALICE]);
      await waitFor("the first answers of the watches", async () =>
        bobWatch.got.length >= 2 && carolWatch.got.length >= 1 && daveWatch.got.length >= 1 ? true : undefined, 10_000);
      expect(bobWatch.got.map((g) => [g.p.userId, stateName(g.p.state), g.p.lastSeenTime])).toEqual([
        [ALICE, "UNSPECIFIED", undefined],
        [CAROL, "UNSPECIFIED", undefined],
      ]);
      a1 = new Beating(presence(ALICE), "a1");
      a2 = new Beating(presence(ALICE), "a2");
      await waitFor("bob to see alice online", async () => (bobWatch.states(ALICE).includes("ONLINE") ? true : undefined), 10_000);
      const online = bobWatch.of(ALICE).at(-1)!.p;
      expect(online.lastSeenTime).toBeDefined();
      expect(Math.abs(timestampMs(online.lastSeenTime!) - Date.now())).toBeLessThan(5_000);
    });

    it("GetPresence: a contact and a large-group member see ONLINE; a stranger gets exactly the answer for a user who does not exist", async () => {
      const forBob = await presence(BOB).getPresence({ userIds: [ALICE, CAROL, NOBODY] });
      expect(forBob.presences.map((p) => [p.userId, stateName(p.state), p.lastSeenTime !== undefined])).toEqual([
        [ALICE, "ONLINE", true],
        [CAROL, "UNSPECIFIED", false],
        [NOBODY, "UNSPECIFIED", false],
      ]);
      // dave shares only a group above the fan-out size with alice: readable on demand.
      const forDave = await presence(DAVE).getPresence({ userIds: [ALICE] });
      expect(stateName(forDave.presences[0]!.state)).toBe("ONLINE");
      const forCarol = await presence(CAROL).getPresence({ userIds: [ALICE, NOBODY] });
      const [aliceSeen, nobodySeen] = forCarol.presences;
      expect({ ...aliceSeen, userId: "x" }).toEqual({ ...nobodySeen, userId: "x" });
      expect(aliceSeen!.state).toBe(PresenceState.UNSPECIFIED);
      expect(aliceSeen!.lastSeenTime).toBeUndefined();
    });

    it("one of two devices dropping keeps the user online", async () => {
      await a1.stop();
      await sleep(TIMEOUT + 1_500);
      expect(bobWatch.states(ALICE)).toEqual(["UNSPECIFIED", "ONLINE"]);
      const r = await presence(BOB).getPresence({ userIds: [ALICE] });
      expect(stateName(r.presences[0]!.state)).toBe("ONLINE");
    });

    it("both dropping: OFFLINE within the timeout plus one second, with the last heartbeat as last seen", async () => {
      await a2.stop();
      const offline = await waitFor("bob to see alice offline", async () => bobWatch.of(ALICE).find((g) => g.p.state === PresenceState.OFFLINE), 10_000);
      expect(offline.at - a2.lastAnsweredAt).toBeLessThanOrEqual(TIMEOUT + 1_000);
      const lastSeen = timestampMs(offline.p.lastSeenTime!);
      expect(lastSeen).toBeGreaterThanOrEqual(a2.lastSentAt - 50);
      expect(lastSeen).toBeLessThanOrEqual(a2.lastAnsweredAt + 50);
      const r = await presence(BOB).getPresence({ userIds: [ALICE] });
      expect([stateName(r.presences[0]!.state), timestampMs(r.presences[0]!.lastSeenTime!)]).toEqual(["OFFLINE", lastSeen]);
      expect(bobWatch.states(ALICE)).toEqual(["UNSPECIFIED", "ONLINE", "OFFLINE"]);
      // The same transitions reached bob's chat stream, with the same last seen.
      await waitFor("alice's transitions on bob's chat stream", async () => (chatStates(bobChat, ALICE).length >= 2 ? true : undefined), 5_000);
      expect(chatStates(bobChat, ALICE)).toEqual(["ONLINE", "OFFLINE"]);
      expect(timestampMs(bobChat.of("presence").filter((p) => p.userId === ALICE).at(-1)!.lastSeenTime!)).toBe(lastSeen);
    });

    it("non-contacts learned nothing on their watches: one UNSPECIFIED answer, no transition", async () => {
      expect(carolWatch.got.map((g) => [g.p.userId, stateName(g.p.state), g.p.lastSeenTime])).toEqual([[ALICE, "UNSPECIFIED", undefined]]);
      expect(daveWatch.got.map((g) => [g.p.userId, stateName(g.p.state), g.p.lastSeenTime])).toEqual([[ALICE, "UNSPECIFIED", undefined]]);
      expect(carolWatch.end).toBeUndefined();
      // Nor on their chat streams.
      expect(carolChat.of("presence")).toEqual([]);
      expect(daveChat.of("presence")).toEqual([]);
      expect(carolChat.end).toBeUndefined();
    });

    it("an open chat stream is presence: its user goes online with no heartbeat, and offline after it closes", async () => {
      const FRANK = `frank-${run}`;
      await chatClient(target().baseUrl, "connect-1.1", bearer(target().tokenFor(FRANK))).createDirectChannel({ peerUserId: BOB });
      const frankWatch = watch(BOB, [FRANK]);
      const frank = chatStream(FRANK, "f-phone");
      await waitFor("bob to see frank online (chat stream only)", async () => (frankWatch.states(FRANK).includes("ONLINE") ? true : undefined), 10_000);
      await waitFor("frank online on bob's chat stream", async () => (chatStates(bobChat, FRANK).includes("ONLINE") ? true : undefined), 5_000);
      frank.stop();
      const closedAt = Date.now();
      await waitFor("bob to see frank offline", async () => (frankWatch.states(FRANK).includes("OFFLINE") ? true : undefined), 10_000);
      // A closed stream is a device going offline: the grace applies, not the whole timeout.
      expect(Date.now() - closedAt).toBeLessThan(TIMEOUT + 2_000);
      await waitFor("frank offline on bob's chat stream", async () => (chatStates(bobChat, FRANK).includes("OFFLINE") ? true : undefined), 5_000);
    });

    it("a device reconnecting every 2 s for a minute (scaled: every 200 ms for 6 s) makes at most 2 transitions for contacts", async () => {
      const before = bobWatch.of(ALICE).length;
      const alice = presence(ALICE);
      const t0 = Date.now();
      while (Date.now() - t0 < 6_000) {
        await alice.heartbeat({ deviceId: "flappy" });
        await sleep(100);
        await alice.heartbeat({ deviceId: "flappy", goingOffline: true });
        await sleep(100);
      }
      // Whatever the last reconnect started is decided within the grace and the dwell.
      await sleep(GRACE + 2_000 + 1_000);
      const seen = bobWatch.states(ALICE).slice(before);
      expect(seen.length).toBeLessThanOrEqual(2);
      expect(seen.length).toBeGreaterThanOrEqual(1);
      expect(bobWatch.end).toBeUndefined();
    });

    it("Heartbeat checks device_id and refuses a device heartbeating much faster than the interval", async () => {
      const alice = presence(ALICE);
      for (const deviceId of ["", "has space", "x".repeat(65)]) {
        const err = await alice.heartbeat({ deviceId }).catch((e: unknown) => e);
        expect(err, deviceId).toBeInstanceOf(ConnectError);
        expect((err as ConnectError).code).toBe(Code.InvalidArgument);
        expect((err as ConnectError).rawMessage).toContain("device_id");
      }
      const ok = await alice.heartbeat({ deviceId: "fast" });
      expect(Number(ok.nextHeartbeatIn?.seconds) * 1000 + (ok.nextHeartbeatIn?.nanos ?? 0) / 1e6).toBe(INTERVAL);
      const results = await Promise.all(Array.from({ length: 30 }, () => alice.heartbeat({ deviceId: "fast" }).then(() => "ok", (e: unknown) => e)));
      const refused = results.filter((r) => r instanceof ConnectError && r.code === Code.ResourceExhausted);
      expect(refused.length).toBeGreaterThan(0);
      expect((refused[0] as ConnectError).rawMessage).toContain("too many heartbeats");
      await alice.heartbeat({ deviceId: "fast", goingOffline: true }).catch(() => undefined);
    });

    it("GetPresence and WatchPresence take 1..500 distinct ids; watches per caller are capped", async () => {
      const bob = presence(BOB);
      const many = Array.from({ length: 500 }, (_, i) => `u${i}-${run}`);
      const r = await bob.getPresence({ userIds: [...many.slice(0, 499), ALICE] });
      expect(r.presences.map((p) => p.userId)).toEqual([...many.slice(0, 499), ALICE]);
      expect(stateName(r.presences[499]!.state)).not.toBe("UNSPECIFIED");
      for (const userIds of [[], [...many, ALICE], [ALICE, ALICE]]) {
        const err = await bob.getPresence({ userIds }).catch((e: unknown) => e);
        expect((err as ConnectError).code, `${userIds.length} ids`).toBe(Code.InvalidArgument);
        expect((err as ConnectError).rawMessage).toContain("user_ids");
      }
      const erin = presence(ERIN);
      const held = [watch(ERIN, [ALICE]), watch(ERIN, [ALICE]), watch(ERIN, [ALICE])];
      await waitFor("three watches open", async () => (held.every((w) => w.got.length > 0) ? true : undefined), 10_000);
      const err = await (async () => {
        for await (const _ of erin.watchPresence({ userIds: [ALICE] })) return "answered";
        return "closed";
      })().catch((e: unknown) => e);
      expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
      for (const w of held) w.stop();
    });

    it("ReportDevices (chat servers' batch heartbeats) is not served at the edge: nobody can mark another user online", async () => {
      const VICTIM = `victim-${run}`;
      await chatClient(target().baseUrl, "connect-1.1", bearer(target().tokenFor(CAROL))).createDirectChannel({ peerUserId: VICTIM });
      for (const protocol of ["connect-1.1", "grpc"] as const) {
        const carol = createClient(PresenceService, transportFor(protocol, target().baseUrl, [withHeaders(bearer(target().tokenFor(CAROL)))]));
        const err = await carol.reportDevices({ live: [{ userId: VICTIM, deviceId: "forged" }] }).catch((e: unknown) => e);
        expect((err as ConnectError).code, protocol).toBe(Code.Unimplemented);
        expect((err as ConnectError).rawMessage).toMatch(/internal/);
      }
      await sleep(500);
      const r = await presence(CAROL).getPresence({ userIds: [VICTIM] });
      expect(r.presences[0]!.lastSeenTime).toBeUndefined();
      expect(stateName(r.presences[0]!.state)).not.toBe("ONLINE");
    });

    it("ListOnline (internal, no contact filter) is not served at the edge: nobody learns a stranger's state through it", async () => {
      const carol = createClient(PresenceService, transportFor("connect-1.1", target().baseUrl, [withHeaders(bearer(target().tokenFor(CAROL)))]));
      const err = await carol.listOnline({ userIds: [ALICE] }).catch((e: unknown) => e);
      expect((err as ConnectError).code).toBe(Code.Unimplemented);
      expect((err as ConnectError).rawMessage).toMatch(/internal/);
    });
  });
}
