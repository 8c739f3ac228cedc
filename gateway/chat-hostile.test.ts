/**
 * Acceptance (issue 9): the chat bad-input table. Hostile or malformed chat calls through the
 * real embedded mesh (memory engine, gateway on port 0) over Connect, gRPC and gRPC-web; each
 * gets the contract's code and a clear message naming the field or the problem (no stack, no
 * internal address), and afterwards nothing was stored: every user's channel list, every
 * channel's history and every user's Sync from a cursor taken before the table are unchanged.
 */
import { create } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { Agent } from "node:http";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { SessionRequestSchema, type SessionRequest } from "../gen/switchboard/chat/v1/chat_pb.js";
import { loadConfig } from "../platform/config.js";
import { signHs256 } from "./auth/jwt.js";
import { bearer, chatClient, codeName, failure, LiveDevice, syncAll, type ChatClient, type Protocol } from "./chat-wire.js";

const SECRET = "chat-hostile-test-secret-0123456789abcdef0123";
const ALICE = "h-alice";
const BOB = "h-bob";
const CAROL = "h-carol";
/** In no channel at all: the outsider. */
const DAVE = "h-dave";
const USERS = [ALICE, BOB, CAROL, DAVE] as const;
const TYPING_PER_WINDOW = 5;

let running: Running;
let base: string;
const tokenFor = (sub: string) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
const as = (user: string, protocol: Protocol = "connect-1.1", extra: Record<string, string> = {}): ChatClient =>
  chatClient(base, protocol, { ...bearer(tokenFor(user)), ...extra });

/** Channels and messages made in setup, named by what the table does with them. */
const fx = {
  direct: "", // alice-bob
  group: "", // alice (owner), bob, carol
  bobCarol: "", // alice is not in it
  full: "", // alice + 99 others: at the cap
  bobsMessage: 0n, // bob's message in the group
  alicesMessage: 0n, // alice's message in the direct channel, client_message_id "dup-1"
};
const cursors = new Map<string, string>();
const known = new Map<string, Set<bigint>>();
let before: Snapshot;

beforeAll(async () => {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "500" });
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: SECRET } });
  base = `http://127.0.0.1:${running.gatewayPort}`;
  fx.direct = (await as(ALICE).createDirectChannel({ peerUserId: BOB })).channel!.channelId;
  fx.group = (await as(ALICE).createGroupChannel({ name: "hostile trio", memberUserIds: [BOB, CAROL], requestId: "req-1" })).channel!.channelId;
  fx.bobCarol = (await as(BOB).createDirectChannel({ peerUserId: CAROL })).channel!.channelId;
  const others = Array.from({ length: 99 }, (_, i) => `h-member-${String(i + 1).padStart(3, "0")}`);
  fx.full = (await as(ALICE).createGroupChannel({ name: "full house", memberUserIds: others })).channel!.channelId;
  fx.bobsMessage = (await as(BOB).sendMessage({ channelId: fx.group, clientMessageId: "bob-1", text: "bob in the group" })).message!.messageId;
  fx.alicesMessage = (await as(ALICE).sendMessage({ channelId: fx.direct, clientMessageId: "dup-1", text: "hello bob" })).message!.messageId;
  // A fresh cursor still yields the unsettled tail (the last settle window) once more: Sync
  // through it now, so only what the table stores could show up afterwards.
  for (const u of USERS) {
    const start = await syncAll(as(u), "watch", (await as(u).sync({ deviceId: "watch", cursor: "" })).nextCursor);
    cursors.set(u, start.cursor);
    known.set(u, new Set(start.events.map((e) => e.eventId)));
  }
  before = await snapshot();
}, 60_000);
afterAll(() => running?.close());

interface Snapshot {
  readonly channels: Record<string, unknown>;
  readonly history: Record<string, unknown>;
}

/** Everything a hostile call could have changed, as seen through the contract. */
async function snapshot(): Promise<Snapshot> {
  const channels: Record<string, unknown> = {};
  const ids = new Set<string>();
  for (const u of USERS) {
    const list = await as(u).listMyChannels({ pageSize: 100 });
    channels[u] = list.channels.map((c) => {
      ids.add(c.channelId);
      return {
        id: c.channelId,
        name: c.name,
        last: c.lastMessageId,
        read: c.readUpToId,
        members: c.members.map((m) => `${m.userId}:${m.role}`).sort(),
      };
    });
  }
  const history: Record<string, unknown> = {};
  for (const id of ids) {
    const reader = id === fx.bobCarol ? BOB : ALICE;
    const page = await as(reader).getHistory({ channelId: id, pageSize: 200 });
    history[id] = page.messages.map((m) => [m.messageId, m.senderId, m.text, m.deleted]);
  }
  return { channels, history };
}

interface Row {
  readonly name: string;
  /** Who calls: a user (valid token), or raw headers (no token, forged ones). */
  readonly as: string | { readonly headers: Record<string, string> };
  readonly protocol?: Protocol;
  readonly call: (c: ChatClient) => Promise<unknown>;
  readonly code: Code;
  readonly message: RegExp;
}

const big = (n: number, ch = "x") => ch.repeat(n);
const send = (channelId: () => string, text: string, clientMessageId = "cm-hostile") => (c: ChatClient) =>
  c.sendMessage({ channelId: channelId(), clientMessageId, text });
const FORGED = { "x-switchboard-identity": `v1.${Buffer.from(JSON.stringify({ sub: BOB })).toString("base64url")}.forged`, "x-user-id": BOB, "x-switchboard-user": BOB };

const ROWS: readonly Row[] = [
  // Outsiders: membership is not revealed, and nothing happens.
  { name: "non-member sends", as: DAVE, call: send(() => fx.group, "let me in"), code: Code.NotFound, message: /channel .*not found|not found/i },
  { name: "non-member reads history", as: DAVE, call: (c) => c.getHistory({ channelId: fx.group }), code: Code.NotFound, message: /not found/i },
  { name: "non-member deletes a message", as: DAVE, call: (c) => c.deleteMessage({ channelId: fx.group, messageId: fx.bobsMessage }), code: Code.NotFound, message: /not found/i },
  { name: "non-member marks read", as: DAVE, call: (c) => c.markRead({ channelId: fx.group, upToId: fx.bobsMessage }), code: Code.NotFound, message: /not found/i },
  { name: "non-member marks delivered", as: DAVE, call: (c) => c.markDelivered({ deviceId: "d1", channelId: fx.group, upToId: fx.bobsMessage }), code: Code.NotFound, message: /not found/i },
  { name: "non-member types", as: DAVE, call: (c) => c.sendTyping({ channelId: fx.group, active: true }), code: Code.NotFound, message: /not found/i },
  { name: "non-member gets the channel", as: ALICE, call: (c) => c.getChannel({ channelId: fx.bobCarol }), code: Code.NotFound, message: /not found/i },
  { name: "non-member adds themself", as: DAVE, call: (c) => c.addMembers({ channelId: fx.group, userIds: [DAVE] }), code: Code.NotFound, message: /not found/i },
  // Text.
  { name: "100,001 characters", as: ALICE, call: send(() => fx.direct, big(100_001)), code: Code.InvalidArgument, message: /text.*100,?000/ },
  { name: "100,001 emoji (code points, not bytes)", as: ALICE, call: send(() => fx.direct, big(100_001, "\u{1F600}")), code: Code.InvalidArgument, message: /text.*100,?000/ },
  { name: "empty text", as: ALICE, call: send(() => fx.direct, ""), code: Code.InvalidArgument, message: /\btext\b.*required/ },
  { name: "missing client_message_id", as: ALICE, call: send(() => fx.direct, "hi", ""), code: Code.InvalidArgument, message: /client_message_id/ },
  { name: "client_message_id of 65 characters", as: ALICE, call: send(() => fx.direct, "hi", big(65, "k")), code: Code.InvalidArgument, message: /client_message_id.*64/ },
  { name: "client_message_id with a control character", as: ALICE, call: send(() => fx.direct, "hi", "bell\u0007"), code: Code.InvalidArgument, message: /client_message_id.*printable/ },
  // Device ids.
  { name: "Sync with an empty device_id", as: ALICE, call: (c) => c.sync({ deviceId: "" }), code: Code.InvalidArgument, message: /device_id/ },
  { name: "Sync with a 65-character device_id", as: ALICE, call: (c) => c.sync({ deviceId: big(65, "d") }), code: Code.InvalidArgument, message: /device_id.*64/ },
  { name: "Sync with a device_id of bad characters", as: ALICE, call: (c) => c.sync({ deviceId: "phone 1/../#" }), code: Code.InvalidArgument, message: /device_id/ },
  { name: "MarkDelivered with an empty device_id", as: ALICE, call: (c) => c.markDelivered({ deviceId: "", channelId: fx.direct, upToId: fx.alicesMessage }), code: Code.InvalidArgument, message: /device_id/ },
  // Roles and membership.
  { name: "plain member deletes someone else's message", as: CAROL, call: (c) => c.deleteMessage({ channelId: fx.group, messageId: fx.bobsMessage }), code: Code.PermissionDenied, message: /sender|owner|admin/i },
  { name: "plain member removes another member", as: BOB, call: (c) => c.removeMember({ channelId: fx.group, userId: CAROL }), code: Code.PermissionDenied, message: /owner|admin/i },
  { name: "plain member adds a member", as: BOB, call: (c) => c.addMembers({ channelId: fx.group, userIds: [DAVE] }), code: Code.PermissionDenied, message: /owner|admin/i },
  {
    name: "group over the cap (101 members)",
    as: ALICE,
    call: (c) => c.createGroupChannel({ name: "too many", memberUserIds: Array.from({ length: 100 }, (_, i) => `h-extra-${i}`) }),
    code: Code.InvalidArgument,
    message: /member_user_ids.*100/,
  },
  { name: "adding to a group at the cap", as: ALICE, call: (c) => c.addMembers({ channelId: fx.full, userIds: [DAVE] }), code: Code.FailedPrecondition, message: /100|cap|at most/i },
  { name: "adding yourself", as: ALICE, call: (c) => c.addMembers({ channelId: fx.group, userIds: [ALICE] }), code: Code.InvalidArgument, message: /user_ids.*yourself/ },
  { name: "removing yourself", as: ALICE, call: (c) => c.removeMember({ channelId: fx.group, userId: ALICE }), code: Code.InvalidArgument, message: /user_id.*LeaveChannel/ },
  { name: "direct channel with yourself", as: ALICE, call: (c) => c.createDirectChannel({ peerUserId: ALICE }), code: Code.InvalidArgument, message: /peer_user_id.*yourself/ },
  { name: "direct channel with nobody", as: ALICE, call: (c) => c.createDirectChannel({ peerUserId: "" }), code: Code.InvalidArgument, message: /peer_user_id/ },
  { name: "adding members to a direct channel", as: ALICE, call: (c) => c.addMembers({ channelId: fx.direct, userIds: [CAROL] }), code: Code.FailedPrecondition, message: /direct/ },
  { name: "leaving a direct channel", as: ALICE, call: (c) => c.leaveChannel({ channelId: fx.direct }), code: Code.FailedPrecondition, message: /direct/ },
  { name: "group with an empty name", as: ALICE, call: (c) => c.createGroupChannel({ name: "", memberUserIds: [BOB] }), code: Code.InvalidArgument, message: /\bname\b/ },
  { name: "group name of 101 characters", as: ALICE, call: (c) => c.createGroupChannel({ name: big(101, "n"), memberUserIds: [BOB] }), code: Code.InvalidArgument, message: /\bname\b.*100/ },
  { name: "group request_id reused with other members", as: ALICE, call: (c) => c.createGroupChannel({ name: "hostile trio", memberUserIds: [BOB], requestId: "req-1" }), code: Code.FailedPrecondition, message: /request_id/ },
  // Malformed ids and cursors.
  { name: "Sync with garbage base64 cursor", as: ALICE, call: (c) => c.sync({ deviceId: "d1", cursor: "%%%not*base64%%%" }), code: Code.InvalidArgument, message: /cursor/ },
  { name: "Sync with a well-formed base64 non-cursor", as: ALICE, call: (c) => c.sync({ deviceId: "d1", cursor: Buffer.from("hello, world").toString("base64url") }), code: Code.InvalidArgument, message: /cursor/ },
  { name: "Sync with a 10 KB cursor", as: ALICE, call: (c) => c.sync({ deviceId: "d1", cursor: big(10_000, "A") }), code: Code.InvalidArgument, message: /cursor/ },
  { name: "MarkRead up_to_id 0", as: BOB, call: (c) => c.markRead({ channelId: fx.direct, upToId: 0n }), code: Code.InvalidArgument, message: /up_to_id/ },
  { name: "MarkDelivered up_to_id 0", as: BOB, call: (c) => c.markDelivered({ deviceId: "b1", channelId: fx.direct, upToId: 0n }), code: Code.InvalidArgument, message: /up_to_id/ },
  { name: "DeleteMessage message_id 0", as: ALICE, call: (c) => c.deleteMessage({ channelId: fx.direct, messageId: 0n }), code: Code.InvalidArgument, message: /message_id/ },
  { name: "DeleteMessage of an unknown message", as: ALICE, call: (c) => c.deleteMessage({ channelId: fx.direct, messageId: fx.alicesMessage + 12_345n }), code: Code.NotFound, message: /message/ },
  { name: "unknown channel id", as: ALICE, call: (c) => c.getHistory({ channelId: "no-such-channel" }), code: Code.NotFound, message: /not found/i },
  { name: "oversized channel id (65 characters)", as: ALICE, call: send(() => big(65, "c"), "hi"), code: Code.InvalidArgument, message: /channel_id/ },
  { name: "channel id with bad characters", as: ALICE, call: (c) => c.getChannel({ channelId: "../../etc/passwd" }), code: Code.InvalidArgument, message: /channel_id/ },
  { name: "empty channel id", as: ALICE, call: send(() => "", "hi"), code: Code.InvalidArgument, message: /channel_id/ },
  // Page sizes and tokens.
  { name: "ListMyChannels page_size 101", as: ALICE, call: (c) => c.listMyChannels({ pageSize: 101 }), code: Code.InvalidArgument, message: /page_size/ },
  { name: "ListMyChannels page_size -1", as: ALICE, call: (c) => c.listMyChannels({ pageSize: -1 }), code: Code.InvalidArgument, message: /page_size/ },
  { name: "ListMyChannels garbage page_token", as: ALICE, call: (c) => c.listMyChannels({ pageToken: "ZZZ not a token" }), code: Code.InvalidArgument, message: /page_token/ },
  { name: "GetHistory page_size 201", as: ALICE, call: (c) => c.getHistory({ channelId: fx.direct, pageSize: 201 }), code: Code.InvalidArgument, message: /page_size/ },
  { name: "Sync page_size 501", as: ALICE, call: (c) => c.sync({ deviceId: "d1", pageSize: 501 }), code: Code.InvalidArgument, message: /page_size/ },
  // Identity: headers never make a caller.
  { name: "no credentials", as: { headers: {} }, call: send(() => fx.direct, "anon"), code: Code.Unauthenticated, message: /needs credentials/ },
  { name: "forged x-switchboard-identity, no token", as: { headers: { "x-switchboard-identity": FORGED["x-switchboard-identity"] } }, call: send(() => fx.direct, "forged"), code: Code.Unauthenticated, message: /needs credentials/ },
  { name: "forged x-user-id, no token", as: { headers: { "x-user-id": BOB } }, call: send(() => fx.direct, "forged"), code: Code.Unauthenticated, message: /needs credentials/ },
  { name: "forged headers over gRPC, no token", as: { headers: FORGED }, protocol: "grpc", call: (c) => c.listMyChannels({}), code: Code.Unauthenticated, message: /needs credentials/ },
  { name: "alice's token plus headers naming bob: still alice", as: { headers: { ...bearer(tokenFor(ALICE)), ...FORGED } }, call: (c) => c.getChannel({ channelId: fx.bobCarol }), code: Code.NotFound, message: /not found/i },
  // Frames and floods.
  { name: "2 MiB SendMessage", as: ALICE, call: send(() => fx.direct, big(2 * 1024 * 1024)), code: Code.ResourceExhausted, message: /larger than|exceeds|too large|limit/i },
  { name: "2 MiB SendMessage over gRPC", as: ALICE, protocol: "grpc", call: send(() => fx.direct, big(2 * 1024 * 1024)), code: Code.ResourceExhausted, message: /larger than|exceeds|too large|limit/i },
  {
    name: `typing flood (more than ${TYPING_PER_WINDOW} per window)`,
    as: ALICE,
    call: async (c) => {
      for (let i = 0; i <= TYPING_PER_WINDOW; i++) await c.sendTyping({ channelId: fx.group, active: true });
    },
    code: Code.ResourceExhausted,
    message: /typing/,
  },
  { name: "Subscribe with a bad device_id", as: ALICE, protocol: "grpc-web-1.1", call: (c) => firstOf(c.subscribe({ deviceId: "bad device" })), code: Code.InvalidArgument, message: /device_id/ },
  { name: "Subscribe without credentials", as: { headers: FORGED }, protocol: "connect-h2", call: (c) => firstOf(c.subscribe({ deviceId: "s1" })), code: Code.Unauthenticated, message: /needs credentials/ },
  {
    name: "Session whose first frame is not open",
    as: ALICE,
    protocol: "grpc",
    call: (c) => firstOf(c.session(frames(create(SessionRequestSchema, { frame: { case: "send", value: { channelId: fx.direct, clientMessageId: "s-1", text: "sneaky" } } })))),
    code: Code.InvalidArgument,
    message: /open/,
  },
  {
    name: "Session opened with a bad device_id",
    as: ALICE,
    protocol: "grpc",
    call: (c) => firstOf(c.session(frames(create(SessionRequestSchema, { frame: { case: "open", value: { deviceId: "" } } })))),
    code: Code.InvalidArgument,
    message: /device_id/,
  },
];

async function firstOf(stream: AsyncIterable<unknown>): Promise<unknown> {
  for await (const x of stream) return x;
  return undefined;
}

async function* frames(...items: SessionRequest[]): AsyncIterable<SessionRequest> {
  for (const f of items) yield f;
  // Hold the request side open: a stream that ends may be refused for ending, not for its frame.
  await new Promise((r) => setTimeout(r, 2_000));
}

const STACK = /\n\s+at |\bat [\w.]+ \(|node_modules|\.ts:\d+/;
const INTERNAL_ADDRESS = /\b(?:127\.0\.0\.1|0\.0\.0\.0|localhost|\[::1?\]):\d+/;

describe("chat bad-input table through the gateway", () => {
  it(`has at least 30 cases (${ROWS.length})`, () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(30);
  });

  for (const row of ROWS) {
    it(`${row.name} -> ${Code[row.code]}`, async () => {
      // A connection pool per row: one refused call must not decide how the next row fares
      // (see "the connection after a refused oversized message" below).
      const agent = new Agent({ keepAlive: true });
      const headers = typeof row.as === "string" ? bearer(tokenFor(row.as)) : row.as.headers;
      const client = chatClient(base, row.protocol ?? "connect-1.1", headers, agent);
      const err = (await failure(() => row.call(client)).finally(() => agent.destroy())) as ConnectError | undefined;
      expect(codeName(err?.code), err?.rawMessage).toBe(Code[row.code]);
      expect(err!.rawMessage).toMatch(row.message);
      expect(err!.rawMessage).not.toMatch(STACK);
      expect(err!.rawMessage).not.toMatch(INTERNAL_ADDRESS);
      expect(err!.rawMessage.length).toBeLessThan(400);
    });
  }

  it("a duplicate client_message_id returns the same message with duplicate = true", async () => {
    for (const protocol of ["connect-1.1", "grpc", "grpc-web-1.1"] as const) {
      const res = await as(ALICE, protocol).sendMessage({ channelId: fx.direct, clientMessageId: "dup-1", text: "hello bob" });
      expect(res.duplicate).toBe(true);
      expect(res.message!.messageId).toBe(fx.alicesMessage);
      expect(res.message!.text).toBe("hello bob");
    }
    // A retry whose text differs is still the first message: the key decides, never a second one.
    const changed = await failure(() => as(ALICE).sendMessage({ channelId: fx.direct, clientMessageId: "dup-1", text: "hello again" }));
    if (changed === undefined) {
      const res = await as(ALICE).sendMessage({ channelId: fx.direct, clientMessageId: "dup-1", text: "hello again" });
      expect(res.message!.messageId).toBe(fx.alicesMessage);
      expect(res.duplicate).toBe(true);
    } else {
      expect(codeName(changed.code)).toMatch(/InvalidArgument|FailedPrecondition|AlreadyExists/);
    }
  });

  it("a stream for the forged identity never sees bob's events (the token decides)", async () => {
    const spy = new LiveDevice(ALICE, "spy", "grpc", () => chatClient(base, "grpc", { ...bearer(tokenFor(ALICE)), ...FORGED })).start();
    // Bob types in his channel with carol; alice, whoever she claims to be, must not see it.
    // And carol types in the group alice is in: that one must arrive (the stream is live).
    let seen = false;
    for (let i = 0; i < 40 && !seen; i++) {
      await as(BOB).sendTyping({ channelId: fx.bobCarol, active: true }).catch(() => undefined);
      await as(CAROL).sendTyping({ channelId: fx.group, active: true }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 250));
      seen = spy.of("typing").some((t) => t.channelId === fx.group);
    }
    spy.stop();
    expect(seen, "the spy stream is live").toBe(true);
    expect(spy.of("typing").filter((t) => t.channelId === fx.bobCarol)).toEqual([]);
  });
});

describe("the HTTP/1.1 connection after a refused oversized message", () => {
  // A client whose message was refused for its size keeps its keep-alive connection; the next
  // call on it must be answered, not hang. Each size: refused send, then ListMyChannels.
  for (const size of [100_001, 400_004, 2 * 1024 * 1024]) {
    for (const protocol of ["connect-1.1", "grpc-web-1.1"] as const) {
      it(`${protocol}: a call after a refused ${size.toLocaleString("en-US")}-byte SendMessage is answered`, async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 });
        try {
          const client = chatClient(base, protocol, bearer(tokenFor(ALICE)), agent);
          const refused = await failure(() => client.sendMessage({ channelId: fx.direct, clientMessageId: "big", text: big(size) }, { timeoutMs: 5_000 }));
          expect(refused).toBeDefined();
          const next = await failure(() => client.listMyChannels({}, { timeoutMs: 5_000 }));
          expect(next?.rawMessage, "the next call on the same connection").toBeUndefined();
        } finally {
          agent.destroy();
        }
      });
    }
  }
});

describe("nothing was stored", () => {
  it("every channel list and history is unchanged", async () => {
    const after = await snapshot();
    expect(after.channels).toEqual(before.channels);
    expect(after.history).toEqual(before.history);
  });

  it("Sync from a cursor taken before the table returns no stored event for anyone", async () => {
    for (const u of USERS) {
      const res = await syncAll(as(u), "watch", cursors.get(u)!);
      expect(res.events.filter((e) => e.eventId !== 0n && !known.get(u)!.has(e.eventId)), u).toEqual([]);
    }
  });
});

describe("the limits accept their boundary (run after the table: these store)", () => {
  it("exactly 100,000 characters is accepted through the gateway", async () => {
    const res = await as(ALICE).sendMessage({ channelId: fx.direct, clientMessageId: "max-1", text: big(100_000) });
    expect(res.message!.text).toHaveLength(100_000);
  });

  it("100,000 emoji (400,000 bytes of UTF-8) are accepted through the gateway", async () => {
    const res = await as(ALICE, "grpc").sendMessage({ channelId: fx.direct, clientMessageId: "max-2", text: big(100_000, "\u{1F600}") });
    expect(res.message!.messageId).toBeGreaterThan(0n);
  });

  it("whitespace-only text is 1..100,000 characters, so the contract accepts it", async () => {
    const res = await as(ALICE).sendMessage({ channelId: fx.direct, clientMessageId: "ws-1", text: "   " });
    expect(res.message!.text).toBe("   ");
  });
});
