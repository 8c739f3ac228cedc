/**
 * The gateway's chat message limits on the wire, against the embedded mesh (memory engine): a
 * message of 100,000 code points passes the edge over Connect JSON (HTTP/1.1), gRPC-web and
 * gRPC, unary and as a Session frame; a larger one is refused by the edge with
 * RESOURCE_EXHAUSTED before any chat code runs. What the chat service answers for the one that
 * passes does not matter here (an unknown channel, or Unimplemented while chat is not served):
 * only that it is not the edge's size refusal.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import http from "node:http";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { ChatService, SessionRequestSchema, type SessionRequest } from "../gen/switchboard/chat/v1/chat_pb.js";
import { loadConfig } from "../platform/config.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";

let running: Running;
let base: string;
const token = () => signHs256({ sub: "limits-alice", exp: Math.floor(Date.now() / 1000) + 600 }, DEV_JWT_SECRET);

beforeAll(async () => {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "500" });
  running = await runEmbedded(config, pino({ level: "silent" }));
  base = `http://127.0.0.1:${running.gatewayPort}`;
});
afterAll(async () => {
  await running?.close();
});

/** Answers that come from behind the edge, i.e. the request was within the limit. */
const PAST_THE_EDGE = [Code.Unimplemented, Code.NotFound, Code.PermissionDenied, Code.FailedPrecondition];

const MAX_TEXT = "\u{1F600}".repeat(100_000); // 100,000 code points, 400,000 UTF-8 bytes
const MAX_TEXT_ESCAPED = "\u0001".repeat(100_000); // 600,000 bytes as JSON escapes
const TOO_LARGE = "\u{1F600}".repeat(270_000); // 1,080,000 bytes: past 1 MiB

function clientOver(transport: Transport): Client<typeof ChatService> {
  return createClient(ChatService, transport);
}

const transports: Record<string, () => Transport> = {
  "Connect JSON over HTTP/1.1": () => createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat: false }),
  "gRPC-web over HTTP/1.1": () => createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1" }),
  "gRPC over HTTP/2": () => createGrpcTransport({ baseUrl: base }),
};

async function codeOf(p: Promise<unknown>): Promise<[Code | "ok", string]> {
  try {
    await p;
    return ["ok", ""];
  } catch (e) {
    const ce = ConnectError.from(e);
    return [ce.code, ce.rawMessage];
  }
}

const auth = () => ({ headers: { authorization: `Bearer ${token()}` }, timeoutMs: 10_000 });
const send = (text: string) => ({ channelId: "g-limits", clientMessageId: `m-${Math.random().toString(36).slice(2)}`, text });

describe("chat message limits at the gateway", () => {
  for (const [name, transport] of Object.entries(transports)) {
    it(`${name}: SendMessage with 100,000 code points passes the edge; a larger one is RESOURCE_EXHAUSTED`, async () => {
      const chat = clientOver(transport());
      const [ok, okMsg] = await codeOf(chat.sendMessage(send(MAX_TEXT), auth()));
      expect(PAST_THE_EDGE, `${ok}: ${okMsg}`).toContain(ok);
      const [escaped, escapedMsg] = await codeOf(chat.sendMessage(send(MAX_TEXT_ESCAPED), auth()));
      expect(PAST_THE_EDGE, `${escaped}: ${escapedMsg}`).toContain(escaped);
      const [big, bigMsg] = await codeOf(chat.sendMessage(send(TOO_LARGE), auth()));
      expect(big).toBe(Code.ResourceExhausted);
      expect(bigMsg).toMatch(/larger than|readMaxBytes|message size/i);
    });
  }

  it("HTTP/1.1 keep-alive: after a frame refused part-way, the next call on the same connection is answered", async () => {
    // One socket, reused: the refused body must not leave the connection stuck mid-request.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const transport of [
        createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1", nodeOptions: { agent } }),
        createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat: false, nodeOptions: { agent } }),
      ]) {
        const chat = clientOver(transport);
        expect((await codeOf(chat.sendMessage(send(TOO_LARGE), auth())))[0]).toBe(Code.ResourceExhausted);
        for (let i = 0; i < 2; i++) {
          const [code, msg] = await codeOf(chat.sendMessage(send("hi"), auth()));
          expect(PAST_THE_EDGE, `${code}: ${msg}`).toContain(code);
        }
      }
    } finally {
      agent.destroy();
    }
  });

  it("a small chat call keeps a small limit: SendTyping with a 5,000-character channel id is refused by the edge", async () => {
    const chat = clientOver(transports["Connect JSON over HTTP/1.1"]!());
    const [code] = await codeOf(chat.sendTyping({ channelId: "c".repeat(5_000), active: true }, auth()));
    expect(code).toBe(Code.ResourceExhausted);
    const [small, msg] = await codeOf(chat.sendTyping({ channelId: "g-limits", active: true }, auth()));
    expect(PAST_THE_EDGE, `${small}: ${msg}`).toContain(small);
  });

  it("Session over gRPC: a frame with 100,000 code points passes the edge; a larger frame is RESOURCE_EXHAUSTED", async () => {
    const chat = clientOver(transports["gRPC over HTTP/2"]!());
    const session = async (text: string): Promise<[Code | "ok", string]> => {
      async function* frames(): AsyncGenerator<SessionRequest> {
        yield create(SessionRequestSchema, { frame: { case: "open", value: { deviceId: "d1" } } });
        yield create(SessionRequestSchema, { frame: { case: "send", value: send(text) } });
      }
      return codeOf(
        (async () => {
          for await (const _ of chat.session(frames(), { ...auth(), timeoutMs: 5_000 })) {
            void _;
          }
        })(),
      );
    };
    const [ok, okMsg] = await session(MAX_TEXT);
    // A served Session may also run until the deadline: anything but the edge's size refusal.
    expect([...PAST_THE_EDGE, Code.DeadlineExceeded, "ok"], `${ok}: ${okMsg}`).toContain(ok);
    const [big, bigMsg] = await session(TOO_LARGE);
    expect(big).toBe(Code.ResourceExhausted);
    expect(bigMsg).toMatch(/larger than|readMaxBytes|message size/i);
  });
});
