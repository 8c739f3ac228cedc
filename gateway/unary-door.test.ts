// The unary door on the wire, with an upstream the test drives: the answer and trailers over gRPC
// and gRPC-web, the upstream's errors in the edge's words, refusals before the body (nothing
// called), bad bodies, the caller's deadline and departure reaching the upstream call, and what the
// door leaves to connect-node.
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ChatService, SendMessageRequestSchema, SendMessageResponseSchema, type SendMessageRequest } from "../gen/switchboard/chat/v1/chat_pb.js";
import { RETRY_AFTER_MS_HEADER } from "../platform/grpc/status.js";
import { IDENTITY_ASSERTION_HEADER } from "../platform/identity.js";
import { bearerAdmission, envelope, framesOf, postH1, serveDoor, type Answer, type ServedDoor } from "./door-test-kit.js";
import { unaryDoor } from "./unary-door.js";

const READ_MAX = 256;
const SEND = "/switchboard.chat.v1.ChatService/SendMessage";

interface Called {
  readonly input: SendMessageRequest;
  readonly options: CallOptions;
}
let called: Called[];
let reply: (input: SendMessageRequest, options: CallOptions) => Promise<unknown>;
let served: ServedDoor;
let h2Url: string;
let h1Port: number;

const sent = (text: string) => create(SendMessageResponseSchema, { message: { messageId: 42n, text } });

beforeEach(() => {
  called = [];
  reply = async (input) => sent(input.text);
});

beforeAll(async () => {
  const upstream = {
    sendMessage: (input: SendMessageRequest, options: CallOptions) => {
      called.push({ input, options });
      return reply(input, options);
    },
  };
  const door = unaryDoor({
    desc: ChatService,
    upstream: upstream as never,
    service: "chat",
    internalMethods: ["MarkRead"],
    admission: bearerAdmission(),
    limits: { readMaxBytes: () => READ_MAX },
    assertionFor: (identity, path) => new Headers({ [IDENTITY_ASSERTION_HEADER]: `signed:${identity.userId}:${path}` }),
  });
  served = await serveDoor(door);
  h2Url = served.h2Url;
  h1Port = served.h1Port;
});
afterAll(() => served.close());

const request = (text = "hi"): Buffer => envelope(0, toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, { channelId: "c", clientMessageId: "m1", text })));



async function callH2(body: Buffer, headers: Record<string, string> = {}, path = SEND, leaveAfterMs?: number): Promise<Answer> {
  const session = http2.connect(h2Url);
  try {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", authorization: "Bearer alice", ...headers });
    stream.end(body);
    const chunks: Buffer[] = [];
    let trailers: Record<string, unknown> = {};
    let head: http2.IncomingHttpHeaders = {};
    stream.on("trailers", (t) => (trailers = t));
    stream.on("response", (h) => (head = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    if (leaveAfterMs !== undefined) setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), leaveAfterMs);
    await new Promise<void>((resolve) => stream.once("close", () => resolve()));
    return { status: Number(head[":status"] ?? 0), headers: head, frames: framesOf(Buffer.concat(chunks)), trailers };
  } finally {
    session.close();
  }
}

const callH1 = (body: Buffer, contentType = "application/grpc-web+proto"): Promise<Answer> =>
  postH1(h1Port, SEND, { "content-type": contentType, authorization: "Bearer alice" }, body);

const grpcMessage = (a: Answer) => decodeURIComponent(String(a.trailers["grpc-message"] ?? ""));

describe("unary door", () => {
  it("gRPC: the upstream's answer in one envelope, then grpc-status 0; the identity asserted for the method, forwarded headers passed", async () => {
    const a = await callH2(request("hello"), { "x-request-id": "r-1", "x-not-forwarded": "no" });
    expect(a.status).toBe(200);
    expect(a.headers["content-type"]).toBe("application/grpc");
    expect(a.frames.map((f) => f.flags)).toEqual([0]);
    expect(fromBinary(SendMessageResponseSchema, a.frames[0]!.data).message?.text).toBe("hello");
    expect(a.trailers["grpc-status"]).toBe("0");
    expect(called).toHaveLength(1);
    expect(called[0]!.input.text).toBe("hello");
    const h = new Headers(called[0]!.options.headers);
    expect(h.get(IDENTITY_ASSERTION_HEADER)).toBe(`signed:alice:${SEND}`);
    expect(h.get("x-request-id")).toBe("r-1");
    expect(h.get("x-not-forwarded")).toBeNull();
    expect(called[0]!.options.timeoutMs).toBeUndefined();
  });

  it("gRPC-web over HTTP/1.1: the answer, then the trailer frame", async () => {
    const a = await callH1(request("web"));
    expect(a.status).toBe(200);
    expect(a.frames.map((f) => f.flags)).toEqual([0, 0x80]);
    expect(fromBinary(SendMessageResponseSchema, a.frames[0]!.data).message?.text).toBe("web");
    expect(a.frames[1]!.data.toString()).toContain("grpc-status: 0\r\n");
  });

  it("an upstream error keeps its code, message and retry hint; an unreachable upstream is 'chat service is unavailable'", async () => {
    reply = async () => {
      throw new ConnectError("channel c", Code.NotFound);
    };
    const notFound = await callH2(request());
    expect([notFound.trailers["grpc-status"], grpcMessage(notFound), notFound.frames]).toEqual([String(Code.NotFound), "channel c", []]);
    reply = async () => {
      throw new ConnectError("No connection established. Last error: connect ECONNREFUSED 10.0.0.7:50054", Code.Unavailable, { [RETRY_AFTER_MS_HEADER]: "300" });
    };
    const down = await callH2(request());
    expect([down.trailers["grpc-status"], grpcMessage(down), down.trailers[RETRY_AFTER_MS_HEADER]]).toEqual([String(Code.Unavailable), "chat service is unavailable", "300"]);
  });

  it("no credentials: Unauthenticated from the headers, the upstream never called", async () => {
    const a = await callH2(request(), { authorization: "" });
    expect(a.trailers["grpc-status"]).toBe(String(Code.Unauthenticated));
    expect(called).toEqual([]);
  });

  it.each([
    ["over the method's limit", envelope(0, Buffer.alloc(READ_MAX + 1, 1))],
    ["malformed", envelope(0, Buffer.from([0xff, 0xff, 0xff]))],
    ["two messages", Buffer.concat([request(), request()])],
    ["no message", Buffer.alloc(0)],
    ["a compressed-flag envelope", envelope(1, Buffer.from("x"))],
  ])("%s: an error status with a clear message, the upstream never called", async (_name, body) => {
    const a = await callH2(body);
    expect([String(Code.InvalidArgument), String(Code.ResourceExhausted)]).toContain(a.trailers["grpc-status"]);
    expect(grpcMessage(a)).not.toBe("");
    expect(called).toEqual([]);
  });

  it("the caller's deadline goes upstream, and DeadlineExceeded answers when it passes", async () => {
    reply = (_input, options) => new Promise((_resolve, reject) => options.signal?.addEventListener("abort", () => reject(new ConnectError("aborted", Code.Canceled))));
    const a = await callH2(request(), { "grpc-timeout": "50m" });
    expect(called[0]!.options.timeoutMs).toBe(50);
    expect(a.trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
    const bad = await callH2(request(), { "grpc-timeout": "soon" });
    expect(bad.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(called).toHaveLength(1);
  });

  it("a caller that leaves cancels the upstream call", async () => {
    let aborted = false;
    reply = (_input, options) =>
      new Promise((_resolve, reject) =>
        options.signal?.addEventListener("abort", () => {
          aborted = true;
          reject(new ConnectError("aborted", Code.Canceled));
        }),
      );
    await callH2(request(), {}, SEND, 30);
    for (let i = 0; i < 50 && !aborted; i++) await new Promise((r) => setTimeout(r, 10));
    expect(aborted).toBe(true);
  });

  it.each([
    ["an internal method", { path: "/switchboard.chat.v1.ChatService/MarkRead" }],
    ["a streaming method", { path: "/switchboard.chat.v1.ChatService/Subscribe" }],
    ["the Connect protocol", { headers: { "content-type": "application/connect+proto" } }],
    ["JSON", { headers: { "content-type": "application/grpc+json" } }],
    ["a compressed request", { headers: { "grpc-encoding": "gzip" } }],
  ])("%s is left to connect-node", async (_name, c: { path?: string; headers?: Record<string, string> }) => {
    const a = await callH2(request(), c.headers ?? {}, c.path ?? SEND);
    expect([a.status, a.headers["x-not-claimed"]]).toEqual([404, "1"]);
    expect(called).toEqual([]);
  });

  it("gRPC over HTTP/1.1 is left to connect-node", async () => {
    const a = await callH1(request(), "application/grpc");
    expect(a.status).toBe(404);
  });
});
