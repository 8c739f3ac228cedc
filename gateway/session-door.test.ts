// The session door on the wire, in front of a real grpc-js server whose Session the test drives:
// frames both ways, the identity asserted for Session, refusals before anything goes upstream, bad
// frames, the upstream's errors in the edge's words, the client leaving or half-closing, the
// per-identity cap, a lane closed under the call, flow control both ways, and what the door
// leaves to connect-node.
import http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  ChatService,
  SessionRequestSchema,
  SessionResponseSchema,
  type SessionRequest,
  type SessionResponse,
} from "../gen/switchboard/chat/v1/chat_pb.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../platform/grpc/server.js";
import { RETRY_AFTER_MS_HEADER } from "../platform/grpc/status.js";
import { IDENTITY_ASSERTION_HEADER, identityKey } from "../platform/identity.js";
import { bearerAdmission, envelope, serveDoor, type ServedDoor } from "./door-test-kit.js";
import { SESSION_PATH, sessionDoor } from "./session-door.js";
import { StreamGuard } from "./stream-guard.js";
import { TcpProxy } from "../platform/engines/cluster/testing/tcp-proxy.js";
import { freePort } from "../testkit/processes.js";

const READ_MAX = 512;

type Upstream = (requests: AsyncIterable<SessionRequest>, ctx: HandlerContext) => AsyncIterable<MessageInitShape<typeof SessionResponseSchema>>;

/** What the fake chat server saw per call. */
interface Seen {
  readonly headers: Headers;
  readonly frames: SessionRequest[];
  aborted: boolean;
  ended: boolean;
}
let seen: Seen[];
let behave: Upstream;
let closeUnder: ((reason: ConnectError) => void)[];
let served: ServedDoor;
let server: RunningGrpcServer;
let client: ReturnType<typeof createGrpcClient<typeof ChatService>>;
const guard = new StreamGuard({ maxPerIdentity: 2 });

/** Echoes: `opened` after open, a send_ack per send with the text, and ends when the client does. */
const echo: Upstream = async function* (requests) {
  for await (const r of requests) {
    if (r.frame.case === "open") yield { frame: { case: "opened", value: { serverId: `chat-for-${r.frame.value.deviceId}` } } };
    else if (r.frame.case === "send") yield { frame: { case: "sendAck", value: { clientMessageId: r.frame.value.clientMessageId, result: { case: "sent", value: { message: { text: r.frame.value.text } } } } } };
  }
};

beforeEach(() => {
  seen = [];
  behave = echo;
  closeUnder = [];
});

beforeAll(async () => {
  server = await startGrpcServer({
    port: 0,
    log: pino({ level: "silent" }),
    services: [
      grpcService(ChatService, {
        session: async function* (requests, ctx) {
          const s: Seen = { headers: ctx.requestHeader, frames: [], aborted: false, ended: false };
          seen.push(s);
          ctx.signal.addEventListener("abort", () => (s.aborted = true));
          async function* recorded(): AsyncIterable<SessionRequest> {
            for await (const r of requests) {
              s.frames.push(r);
              yield r;
            }
            s.ended = true;
          }
          yield* behave(recorded(), ctx);
        },
      }),
    ],
  });
  client = createGrpcClient(ChatService, `127.0.0.1:${server.port}`);
  const door = sessionDoor({
    admission: bearerAdmission(),
    streams: guard,
    readMaxBytes: READ_MAX,
    assertionFor: (identity) => new Headers({ [IDENTITY_ASSERTION_HEADER]: `signed:${identity.userId}:${SESSION_PATH}` }),
    open: async (headers, closed) => {
      closeUnder.push(closed);
      return { call: client.rawBidi(SESSION_PATH, headers), done: () => undefined };
    },
  });
  served = await serveDoor(door);
});
afterAll(async () => {
  client.close();
  await served.close();
  await server.shutdown(0);
});

const frame = (init: MessageInitShape<typeof SessionRequestSchema>): Buffer => envelope(0, toBinary(SessionRequestSchema, create(SessionRequestSchema, init)));
const open = (deviceId = "d1") => frame({ frame: { case: "open", value: { deviceId } } });
const send = (text: string, id = text) => frame({ frame: { case: "send", value: { channelId: "c", clientMessageId: id, text } } });

/** One Session from a lean HTTP/2 client: frames in as they come, the end with status and trailers. */
function session(headers: Record<string, string> = {}, url = served.h2Url) {
  const h2 = http2.connect(url);
  const stream = h2.request({ ":method": "POST", ":path": SESSION_PATH, "content-type": "application/grpc", te: "trailers", authorization: "Bearer alice", ...headers });
  const responses: SessionResponse[] = [];
  let pending = Buffer.alloc(0);
  let head: http2.IncomingHttpHeaders = {};
  let trailers: http2.IncomingHttpHeaders = {};
  stream.on("response", (h) => (head = h));
  stream.on("trailers", (t) => (trailers = t));
  stream.on("data", (c: Buffer) => {
    pending = Buffer.concat([pending, c]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const len = pending.readUInt32BE(1);
      responses.push(fromBinary(SessionResponseSchema, pending.subarray(5, 5 + len)));
      pending = pending.subarray(5 + len);
    }
  });
  stream.on("error", () => undefined);
  const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
  const status = (s = { ...head, ...trailers }) => ({ code: Number(s["grpc-status"] ?? -1), message: decodeURIComponent(String(s["grpc-message"] ?? "")), retryAfterMs: s[RETRY_AFTER_MS_HEADER] });
  return {
    stream,
    responses,
    write: (b: Buffer) => stream.write(b),
    end: (b?: Buffer) => stream.end(b),
    cancel: () => stream.close(http2.constants.NGHTTP2_CANCEL),
    /** Waits for the stream to close; its gRPC status (trailers, or headers of a trailers-only answer). */
    async done() {
      await closed;
      h2.close();
      return { http: Number(head[":status"] ?? 0), contentType: head["content-type"], ...status() };
    },
  };
}

async function until(check: () => boolean, ms = 3_000): Promise<void> {
  for (const end = Date.now() + ms; !check(); ) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("session door", () => {
  it("frames pass both ways in order; the identity asserted for Session, forwarded headers only; a client half-close ends the call OK", async () => {
    const s = session({ "x-request-id": "r-9", "x-not-forwarded": "no" });
    s.write(open("phone"));
    await until(() => s.responses.length === 1);
    expect(s.responses[0]!.frame).toEqual({ case: "opened", value: expect.objectContaining({ serverId: "chat-for-phone" }) });
    for (let i = 0; i < 20; i++) s.write(send(`m${i}`));
    s.end();
    const end = await s.done();
    expect(end).toMatchObject({ http: 200, contentType: "application/grpc", code: 0 });
    expect(s.responses.slice(1).map((r) => (r.frame.case === "sendAck" ? r.frame.value.clientMessageId : "?"))).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.frames.map((f) => f.frame.case)).toEqual(["open", ...Array<string>(20).fill("send")]);
    expect(seen[0]!.ended).toBe(true);
    expect(seen[0]!.headers.get(IDENTITY_ASSERTION_HEADER)).toBe(`signed:alice:${SESSION_PATH}`);
    expect(seen[0]!.headers.get("x-request-id")).toBe("r-9");
    expect(seen[0]!.headers.get("x-not-forwarded")).toBeNull();
    expect(seen[0]!.headers.get("authorization")).toBeNull();
    expect(guard.openFor("alice")).toBe(0);
  });

  it("no credentials: Unauthenticated, nothing opened upstream", async () => {
    const s = session({ authorization: "" });
    s.end(open());
    expect(await s.done()).toMatchObject({ code: Code.Unauthenticated });
    expect(seen).toEqual([]);
    expect(closeUnder).toEqual([]);
  });

  it.each([
    ["a malformed frame", Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff]), Code.InvalidArgument],
    ["a frame over the method's limit", envelope(0, Buffer.alloc(READ_MAX + 1, 1)), Code.ResourceExhausted],
    ["a compressed-flag frame", envelope(1, Buffer.from("x")), Code.InvalidArgument],
  ])("%s mid-stream: the call ends with a clear error, the upstream call cancelled", async (_name, bad, code) => {
    const s = session();
    s.write(open());
    await until(() => s.responses.length === 1);
    s.write(bad);
    const end = await s.done();
    expect(end.code).toBe(code);
    expect(end.message).not.toBe("");
    await until(() => seen[0]!.aborted);
    expect(seen[0]!.frames.map((f) => f.frame.case)).toEqual(["open"]);
    expect(guard.openFor("alice")).toBe(0);
  });

  it("the upstream's error reaches the client with its code and message; an unreachable chat server is 'chat service is unavailable'", async () => {
    behave = async function* (requests) {
      for await (const r of requests) {
        if (r.frame.case === "open") yield { frame: { case: "opened", value: { serverId: "x" } } };
        else throw new ConnectError("the first frame must be open", Code.FailedPrecondition);
      }
    };
    const s = session();
    s.write(open());
    s.write(send("too soon"));
    expect(await s.done()).toMatchObject({ code: Code.FailedPrecondition, message: "the first frame must be open" });
    expect(s.responses).toHaveLength(1);

    const dead = createGrpcClient(ChatService, "127.0.0.1:1");
    const door = sessionDoor({
      streams: guard,
      readMaxBytes: READ_MAX,
      admission: async (_s, _m, _h, values) => (values.set(identityKey, { userId: "bob", kind: "user" }), undefined),
      assertionFor: () => new Headers(),
      open: async (headers) => ({ call: dead.rawBidi(SESSION_PATH, headers), done: () => undefined }),
    });
    const other = await serveDoor(door);
    try {
      const s = session({}, other.h2Url);
      s.end(open());
      expect(await s.done()).toMatchObject({ code: Code.Unavailable, message: "chat service is unavailable" });
    } finally {
      dead.close();
      await other.close();
    }
    expect(guard.openFor("bob")).toBe(0);
  });

  it.each([
    // A killed process: its connection is cut.
    ["its connection cut", (_server: RunningGrpcServer, proxy: TcpProxy) => proxy.down()],
    // A forced shutdown resets its calls (RST_STREAM CANCEL): the client did not cancel anything.
    ["reset by a forced shutdown", (server: RunningGrpcServer) => server.server.forceShutdown()],
  ])("a chat server gone mid-session (%s): UNAVAILABLE without internal addresses, the place freed", async (_name, kill) => {
    const doomed = await startGrpcServer({ port: 0, log: pino({ level: "silent" }), services: [grpcService(ChatService, { session: echo })] });
    const proxy = new TcpProxy(await freePort(), { host: "127.0.0.1", port: doomed.port });
    await proxy.up();
    const to = createGrpcClient(ChatService, `127.0.0.1:${proxy.port}`);
    const other = await serveDoor(
      sessionDoor({
        streams: guard,
        readMaxBytes: READ_MAX,
        admission: bearerAdmission(),
        assertionFor: () => new Headers(),
        open: async (headers) => ({ call: to.rawBidi(SESSION_PATH, headers), done: () => undefined }),
      }),
    );
    try {
      const s = session({ authorization: "Bearer carol" }, other.h2Url);
      s.write(open("tablet"));
      await until(() => s.responses.length === 1);
      expect(guard.openFor("carol")).toBe(1);
      await kill(doomed, proxy);
      const end = await s.done();
      expect(end.code).toBe(Code.Unavailable);
      expect(end.message).not.toMatch(/127\.0\.0\.1|:\d{2,5}\b/);
      expect(guard.openFor("carol")).toBe(0);
    } finally {
      to.close();
      await other.close();
      await proxy.down();
      await doomed.shutdown(0);
    }
  });

  it("a client that leaves cancels the upstream call and frees its place", async () => {
    behave = async function* (requests) {
      for await (const r of requests) if (r.frame.case === "open") yield { frame: { case: "opened", value: { serverId: "x" } } };
    };
    const s = session();
    s.write(open());
    await until(() => s.responses.length === 1);
    expect(guard.openFor("alice")).toBe(1);
    s.cancel();
    await s.done();
    await until(() => seen[0]!.aborted);
    await until(() => guard.openFor("alice") === 0);
  });

  it("past the per-identity cap: ResourceExhausted before anything goes upstream", async () => {
    behave = async function* (requests) {
      for await (const r of requests) if (r.frame.case === "open") yield { frame: { case: "opened", value: { serverId: "x" } } };
    };
    const a = session();
    const b = session();
    a.write(open("a"));
    b.write(open("b"));
    await until(() => a.responses.length === 1 && b.responses.length === 1);
    const c = session();
    c.end(open("c"));
    expect(await c.done()).toMatchObject({ code: Code.ResourceExhausted });
    expect(seen).toHaveLength(2);
    a.end();
    b.end();
    expect((await a.done()).code).toBe(0);
    expect((await b.done()).code).toBe(0);
  });

  it("a connection closed under the call ends it with the reason and its retry hint", async () => {
    behave = async function* (requests) {
      for await (const r of requests) if (r.frame.case === "open") yield { frame: { case: "opened", value: { serverId: "x" } } };
    };
    const s = session();
    s.write(open());
    await until(() => s.responses.length === 1);
    closeUnder[0]!(new ConnectError("chat server connection closed: reconnect", Code.Unavailable, { [RETRY_AFTER_MS_HEADER]: "0" }));
    expect(await s.done()).toMatchObject({ code: Code.Unavailable, message: "chat server connection closed: reconnect", retryAfterMs: "0" });
    await until(() => seen[0]!.aborted);
  });

  it("flow control: a client that stops reading holds the upstream back; nothing is lost once it reads again", async () => {
    const total = 3_000;
    let yielded = 0;
    behave = async function* (requests) {
      for await (const r of requests) {
        if (r.frame.case !== "open") continue;
        for (let i = 0; i < total; i++) {
          yielded++;
          yield { frame: { case: "sendAck", value: { clientMessageId: String(i), result: { case: "sent", value: { message: { text: "x".repeat(10_000) } } } } } };
        }
        return;
      }
    };
    const s = session();
    s.stream.pause();
    s.write(open());
    await until(() => yielded > 0);
    await new Promise((r) => setTimeout(r, 500));
    const heldAt = yielded;
    // 30 MB offered; the windows and buffers of two HTTP/2 hops hold a small part of it.
    expect(heldAt).toBeLessThan(total / 2);
    s.stream.resume();
    s.end();
    expect((await s.done()).code).toBe(0);
    expect(s.responses.map((r) => (r.frame.case === "sendAck" ? Number(r.frame.value.clientMessageId) : -1))).toEqual(Array.from({ length: total }, (_, i) => i));
  });

  it.each([
    ["gRPC-web", { "content-type": "application/grpc-web+proto" }],
    ["the Connect protocol", { "content-type": "application/connect+proto" }],
    ["JSON", { "content-type": "application/grpc+json" }],
    ["a compressed request", { "grpc-encoding": "gzip" }],
    ["a deadline", { "grpc-timeout": "5S" }],
  ])("%s is left to connect-node", async (_name, headers: Record<string, string>) => {
    const s = session(headers);
    s.end(open());
    expect((await s.done()).http).toBe(404);
    expect(seen).toEqual([]);
  });
});
