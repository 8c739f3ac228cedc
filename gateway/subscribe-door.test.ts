// The subscribe door on the wire, with a feed the test drives: each protocol's framing and end
// (gRPC trailers, gRPC-web trailer frame, Connect EndStream), refusals before the body, bad
// bodies, the stream guard's cap, drain and release, and what the door leaves to connect-node.
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  SubscribeRequestSchema,
  SubscribeResponseSchema,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../gen/switchboard/chat/v1/chat_pb.js";
import { IDENTITY_ASSERTION_HEADER, type Identity } from "../platform/identity.js";
import { RETRY_AFTER_MS_HEADER } from "../platform/grpc/status.js";
import { bearerAdmission, envelope, framesOf, postH1, serveDoor, type Answer, type ServedDoor } from "./door-test-kit.js";
import type { LiveFeed } from "./live-feed.js";
import type { RelayedResponse } from "./relayed-response.js";
import { StreamGuard } from "./stream-guard.js";
import { subscribeDoor, SUBSCRIBE_PATH } from "./subscribe-door.js";

/** A feed the test fills and ends; records what the door did with it. */
class TestFeed implements LiveFeed<RelayedResponse> {
  private queue: RelayedResponse[] = [];
  private wake: (() => void) | undefined;
  endedWith: { error: unknown } | undefined;
  closed = false;
  taken = 0;
  push(res: RelayedResponse): void {
    this.queue.push(res);
    this.wake?.();
  }
  end(error?: unknown): void {
    this.endedWith = { error };
    this.wake?.();
  }
  take(): RelayedResponse | undefined {
    const res = this.queue.shift();
    if (res) this.taken++;
    return res;
  }
  get ended(): { error: unknown } | undefined {
    return this.queue.length === 0 ? this.endedWith : undefined;
  }
  onReady(wake: () => void): void {
    this.wake = wake;
  }
  close(): void {
    this.closed = true;
  }
}

const ALICE: Identity = { userId: "alice", kind: "user" };
const READ_MAX = 64;

let guard: StreamGuard;
let opened: { input: SubscribeRequest; headers: Headers; feed: TestFeed }[];
let openFails: unknown;
let served: ServedDoor;
let h2Url: string;
let h1Port: number;

beforeEach(() => {
  guard = new StreamGuard({ maxPerIdentity: 2 });
  opened = [];
  openFails = undefined;
});

beforeAll(async () => {
  const door = subscribeDoor({
    admission: bearerAdmission(ALICE),
    get streams() {
      return guard;
    },
    readMaxBytes: READ_MAX,
    assertionFor: (identity) => new Headers({ [IDENTITY_ASSERTION_HEADER]: `signed:${identity.userId}` }),
    open: async (input, options) => {
      if (openFails) throw openFails;
      const feed = new TestFeed();
      opened.push({ input, headers: new Headers(options.headers), feed });
      return feed;
    },
  });
  served = await serveDoor(door);
  h2Url = served.h2Url;
  h1Port = served.h1Port;
});
afterAll(() => served.close());


const request = (deviceId = "phone"): Buffer => envelope(0, toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { deviceId })));
const response = (n: number): SubscribeResponse =>
  create(SubscribeResponseSchema, { events: Array.from({ length: n }, () => ({ event: { case: "keepAlive" as const, value: {} } })) });




const CONTENT_TYPES = { grpc: "application/grpc", "grpc-web": "application/grpc-web+proto", connect: "application/connect+proto" } as const;
type Wire = keyof typeof CONTENT_TYPES;

/** One HTTP/2 call; `during` runs once the response headers arrived (the stream is attached). */
async function callH2(
  wire: Wire,
  body: Buffer,
  extra: Record<string, string> = {},
  during?: (stream: http2.ClientHttp2Stream) => void | Promise<void>,
): Promise<Answer> {
  const session = http2.connect(h2Url);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": SUBSCRIBE_PATH,
      "content-type": CONTENT_TYPES[wire],
      authorization: "Bearer alice",
      ...(wire === "grpc" ? { te: "trailers" } : {}),
      ...extra,
    });
    stream.end(body);
    const chunks: Buffer[] = [];
    let trailers: Record<string, unknown> = {};
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("response", resolve));
    await during?.(stream);
    await new Promise<void>((resolve) => stream.once("close", () => resolve()));
    return { status: Number(headers[":status"]), headers, frames: framesOf(Buffer.concat(chunks)), trailers };
  } finally {
    session.close();
  }
}

/** gRPC-web over HTTP/1.1, as a browser sends it. */
const callH1 = (body: Buffer, extra: Record<string, string> = {}): Promise<Answer> =>
  postH1(h1Port, SUBSCRIBE_PATH, { "content-type": CONTENT_TYPES["grpc-web"], authorization: "Bearer alice", ...extra }, body);

const unavailable = () => new ConnectError("chat server going away: reconnect", Code.Unavailable, { [RETRY_AFTER_MS_HEADER]: "250" });

/** Ends the first opened feed once it exists, after pushing `n` responses. */
function serveThenEnd(n: number, error?: unknown): () => Promise<void> {
  return async () => {
    while (opened.length === 0) await new Promise((r) => setTimeout(r, 5));
    const feed = opened[0]!.feed;
    for (let i = 1; i <= n; i++) feed.push(response(i));
    feed.end(error);
  };
}

describe("subscribe door: each protocol's framing and end", () => {
  it("gRPC: enveloped responses in order, then trailers with the status, message and retry hint", async () => {
    const ending = serveThenEnd(3, unavailable());
    const [answer] = await Promise.all([callH2("grpc", request()), ending()]);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/grpc");
    expect(answer.frames.map((f) => f.flags)).toEqual([0, 0, 0]);
    expect(answer.frames.map((f) => fromBinary(SubscribeResponseSchema, f.data).events.length)).toEqual([1, 2, 3]);
    expect(answer.trailers["grpc-status"]).toBe(String(Code.Unavailable));
    expect(decodeURIComponent(String(answer.trailers["grpc-message"]))).toBe("chat server going away: reconnect");
    expect(answer.trailers[RETRY_AFTER_MS_HEADER]).toBe("250");
    expect(opened[0]!.input.deviceId).toBe("phone");
    expect(opened[0]!.headers.get(IDENTITY_ASSERTION_HEADER)).toBe("signed:alice");
    expect(guard.openFor("alice")).toBe(0);
  });

  it("gRPC: a clean end is grpc-status 0", async () => {
    const [answer] = await Promise.all([callH2("grpc", request()), serveThenEnd(1)()]);
    expect(answer.frames).toHaveLength(1);
    expect(answer.trailers["grpc-status"]).toBe("0");
  });

  it("gRPC-web over HTTP/2: the end is a trailer frame (flag 0x80) in the body", async () => {
    const [answer] = await Promise.all([callH2("grpc-web", request()), serveThenEnd(2, unavailable())()]);
    expect(answer.headers["content-type"]).toBe("application/grpc-web+proto");
    expect(answer.frames.map((f) => f.flags)).toEqual([0, 0, 0x80]);
    const trailer = answer.frames[2]!.data.toString();
    expect(trailer).toContain(`grpc-status: ${Code.Unavailable}\r\n`);
    expect(trailer).toContain(`${RETRY_AFTER_MS_HEADER}: 250\r\n`);
  });

  it("gRPC-web over HTTP/1.1: the same frames on a chunked response", async () => {
    const [answer] = await Promise.all([callH1(request()), serveThenEnd(1)()]);
    expect(answer.status).toBe(200);
    expect(answer.frames.map((f) => f.flags)).toEqual([0, 0x80]);
    expect(answer.frames[1]!.data.toString()).toContain("grpc-status: 0\r\n");
  });

  it("Connect streaming: the end is an EndStream message (flag 0x02) with the error and its metadata", async () => {
    const [answer] = await Promise.all([callH2("connect", request()), serveThenEnd(1, unavailable())()]);
    expect(answer.headers["content-type"]).toBe("application/connect+proto");
    expect(answer.frames.map((f) => f.flags)).toEqual([0, 2]);
    expect(JSON.parse(answer.frames[1]!.data.toString())).toEqual({
      error: { code: "unavailable", message: "chat server going away: reconnect" },
      metadata: { [RETRY_AFTER_MS_HEADER]: ["250"] },
    });
    const clean = await Promise.all([callH2("connect", request()), (opened.length = 0, serveThenEnd(0)())]);
    expect(JSON.parse(clean[0].frames.at(-1)!.data.toString())).toEqual({});
  });

  it("an upstream that cannot be reached is 'chat service is unavailable', never its address", async () => {
    openFails = new ConnectError("No connection established. Last error: connect ECONNREFUSED 10.0.0.7:50052", Code.Unavailable);
    const answer = await callH2("grpc", request());
    expect(answer.trailers["grpc-status"]).toBe(String(Code.Unavailable));
    expect(decodeURIComponent(String(answer.trailers["grpc-message"]))).toBe("chat service is unavailable");
    expect(guard.openFor("alice")).toBe(0);
  });
});

describe("subscribe door: responses the chat server serialized (relayed)", () => {
  const message = (id: bigint, text: string): SubscribeResponse =>
    create(SubscribeResponseSchema, { events: [{ eventId: id, event: { case: "message", value: { messageId: id, text } } }] });
  const serialized = (r: SubscribeResponse): RelayedResponse => ({ encoded: toBinary(SubscribeResponseSchema, r), eventCount: r.events.length });
  const feedBoth = async () => {
    while (opened.length === 0) await new Promise((r) => setTimeout(r, 5));
    opened[0]!.feed.push(serialized(message(1n, "héllo")));
    opened[0]!.feed.push(message(2n, "decoded"));
    opened[0]!.feed.end();
  };

  it.each(["grpc", "grpc-web", "connect"] as const)("%s: the chat server's bytes as they are, beside decoded responses", async (wire) => {
    const [answer] = await Promise.all([callH2(wire, request()), feedBoth()]);
    const messages = answer.frames.filter((f) => f.flags === 0);
    expect(messages.map((f) => f.data.toString("hex"))).toEqual([message(1n, "héllo"), message(2n, "decoded")].map((r) => Buffer.from(toBinary(SubscribeResponseSchema, r)).toString("hex")));
  });

  it("Connect JSON: a serialized response is decoded and written as JSON", async () => {
    const [answer] = await Promise.all([callH2("connect", envelope(0, Buffer.from(JSON.stringify({ deviceId: "web" }))), { "content-type": "application/connect+json" }), feedBoth()]);
    expect(answer.frames.filter((f) => f.flags === 0).map((f) => JSON.parse(f.data.toString()))).toEqual([
      { events: [{ eventId: "1", message: { messageId: "1", text: "héllo" } }] },
      { events: [{ eventId: "2", message: { messageId: "2", text: "decoded" } }] },
    ]);
  });
});

describe("subscribe door: Connect JSON", () => {
  const json = (value: unknown): Buffer => envelope(0, Buffer.from(JSON.stringify(value)));
  const asJson = { "content-type": "application/connect+json" };

  it("reads a JSON request (unknown fields ignored, as connect-node does) and writes JSON messages and the EndStream", async () => {
    const ending = async () => {
      while (opened.length === 0) await new Promise((r) => setTimeout(r, 5));
      opened[0]!.feed.push(response(2));
      opened[0]!.feed.end(unavailable());
    };
    const [answer] = await Promise.all([callH2("connect", json({ deviceId: "tablet", someFutureField: 1 }), asJson), ending()]);
    expect(answer.headers["content-type"]).toBe("application/connect+json");
    expect(opened[0]!.input.deviceId).toBe("tablet");
    expect(answer.frames.map((f) => f.flags)).toEqual([0, 2]);
    expect(JSON.parse(answer.frames[0]!.data.toString())).toEqual({ events: [{ keepAlive: {} }, { keepAlive: {} }] });
    expect(JSON.parse(answer.frames[1]!.data.toString()).error.code).toBe("unavailable");
  });

  it.each([
    ["not JSON", envelope(0, Buffer.from("{nope"))],
    ["a field of the wrong type", json({ deviceId: 7 })],
  ])("%s: InvalidArgument, nothing opened", async (_name, body) => {
    const answer = await callH2("connect", body, asJson);
    const end = JSON.parse(answer.frames.at(-1)!.data.toString());
    expect(end.error.code).toBe("invalid_argument");
    expect(opened).toHaveLength(0);
  });
});

describe("subscribe door: refusals and bad bodies, nothing opened", () => {
  it("no credentials: Unauthenticated before the body is read", async () => {
    const answer = await callH2("grpc", request(), { authorization: "nonsense" });
    expect(answer.trailers["grpc-status"]).toBe(String(Code.Unauthenticated));
    expect(opened).toHaveLength(0);
  });

  it.each([
    ["a message over the method's limit", envelope(0, Buffer.alloc(READ_MAX + 1, 0x0a)), Code.ResourceExhausted, /larger than configured/],
    ["two request messages", Buffer.concat([request(), request()]), Code.InvalidArgument, /extra input message/],
    ["no request message", Buffer.alloc(0), Code.InvalidArgument, /missing input message/],
    ["bytes that are not a SubscribeRequest", envelope(0, Buffer.from([0x0a, 0x7f, 0x01])), Code.InvalidArgument, /./],
    ["a compressed flag without an encoding", envelope(1, Buffer.from([0x0a, 0x01, 0x61])), Code.InvalidArgument, /compress/],
    ["a truncated envelope", request().subarray(0, 4), Code.InvalidArgument, /./],
  ])("%s", async (_name, body, code, message) => {
    const answer = await callH2("grpc", body);
    expect(answer.trailers["grpc-status"]).toBe(String(code));
    expect(decodeURIComponent(String(answer.trailers["grpc-message"]))).toMatch(message);
    expect(opened).toHaveLength(0);
    expect(guard.openFor("alice")).toBe(0);
  });

  it("past the per-identity cap: ResourceExhausted, and the place is free again once a stream ends", async () => {
    const ends: (() => void)[] = [];
    const hold = (s: http2.ClientHttp2Stream) => new Promise<void>((r) => ends.push(() => (s.close(), r())));
    const first = callH2("grpc", request(), {}, hold);
    const second = callH2("grpc", request(), {}, hold);
    while (opened.length < 2) await new Promise((r) => setTimeout(r, 5));
    const third = await callH2("grpc", request());
    expect(third.trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
    expect(opened).toHaveLength(2);
    for (const end of ends) end();
    await Promise.all([first, second]);
    // The client left: the door closed both feeds and released both places.
    while (guard.openFor("alice") > 0) await new Promise((r) => setTimeout(r, 5));
    expect(opened.every((o) => o.feed.closed)).toBe(true);
  });

  it("the gateway draining ends open streams with UNAVAILABLE and a retry hint", async () => {
    const answer = await callH2("connect", request(), {}, async () => {
      while (opened.length === 0) await new Promise((r) => setTimeout(r, 5));
      await guard.drain(0);
    });
    const end = JSON.parse(answer.frames.at(-1)!.data.toString());
    expect(end.error.code).toBe("unavailable");
    expect(end.error.message).toMatch(/gateway is shutting down/);
    expect(end.metadata[RETRY_AFTER_MS_HEADER]).toHaveLength(1);
    expect(opened[0]!.feed.closed).toBe(true);
  });

  it("a client that stops reading is not written to past its window: the feed keeps the rest", async () => {
    const big = create(SubscribeResponseSchema, { events: [{ cursor: "x".repeat(16_000), event: { case: "keepAlive", value: {} } }] });
    const session = http2.connect(h2Url, { settings: { initialWindowSize: 65_535 } });
    const stream = session.request({ ":method": "POST", ":path": SUBSCRIBE_PATH, "content-type": CONTENT_TYPES.grpc, authorization: "Bearer alice" });
    stream.end(request());
    stream.pause();
    while (opened.length === 0) await new Promise((r) => setTimeout(r, 5));
    const feed = opened[0]!.feed;
    for (let i = 0; i < 200; i++) feed.push(big);
    await new Promise((r) => setTimeout(r, 200));
    // 200 x 16 KB = 3.2 MB offered; what was taken is bounded by the stream's buffers.
    expect(feed.taken).toBeGreaterThan(0);
    expect(feed.taken).toBeLessThan(200);
    session.destroy();
    while (!feed.closed) await new Promise((r) => setTimeout(r, 5));
  });
});

describe("subscribe door: what it leaves to connect-node", () => {
  it.each([
    ["gRPC-web text", { "content-type": "application/grpc-web-text" }],
    ["a compressed request", { "grpc-encoding": "gzip" }],
    ["a deadline", { "grpc-timeout": "5S" }],
    ["another Connect protocol version", { "content-type": CONTENT_TYPES.connect, "connect-protocol-version": "2" }],
  ])("%s", async (_name, headers) => {
    const answer = await callH2("grpc", request(), headers as Record<string, string>);
    expect(answer.status).toBe(404);
    expect(answer.headers["x-not-claimed"]).toBe("1");
    expect(opened).toHaveLength(0);
  });

  it("gRPC over HTTP/1.1 (not gRPC)", async () => {
    const answer = await callH1(request(), { "content-type": "application/grpc" });
    expect(answer.status).toBe(404);
  });
});
