// The edge builds one message-size table for everything it serves: an operator override naming
// reflection or health is valid (it was refused once the subscribe door got its own table), and
// the subscribe door reads Subscribe's size from the same table as connect-node's routes.
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { SubscribeRequestSchema } from "../gen/switchboard/chat/v1/chat_pb.js";
import { loadConfig } from "../platform/config.js";
import { signHs256 } from "./auth/jwt.js";
import { SUBSCRIBE_PATH } from "./subscribe-door.js";

const jwtSecret = "edge-limits-test-secret-0123456789abcdef0123456789";
let running: Running;

beforeAll(async () => {
  const config = loadConfig({
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
    SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES: "grpc.reflection.v1.ServerReflection/ServerReflectionInfo=4096, switchboard.chat.v1.ChatService/Subscribe=64",
  });
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
});
afterAll(async () => {
  await running?.close();
});

/** One gRPC Subscribe with `deviceId`; resolves with its grpc-status once the stream ends or its first message arrives. */
async function subscribe(deviceId: string): Promise<string> {
  const body = toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { deviceId }));
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  const session = http2.connect(`http://127.0.0.1:${running.gatewayPort}`);
  try {
    const token = signHs256({ sub: "limits-user", exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret);
    const stream = session.request({ ":method": "POST", ":path": SUBSCRIBE_PATH, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${token}` });
    stream.end(frame);
    return await new Promise<string>((resolve) => {
      stream.on("trailers", (t) => resolve(String(t["grpc-status"])));
      stream.once("data", () => resolve("attached"));
    });
  } finally {
    session.close();
  }
}

describe("edge message limits", () => {
  it("an override naming reflection starts the edge, and Subscribe's own override applies at the door", async () => {
    expect(await subscribe("d1")).toBe("attached");
    // 100 bytes of device id: past the 64-byte override, refused before the chat server sees it.
    expect(await subscribe("d".repeat(100))).toBe(String(Code.ResourceExhausted));
  });
});
