// The chat acceptance suite with every Subscribe relayed (gateway/chat-relay.ts): the embedded
// mesh without the in-process hop, so the gateway reaches the chat server over gRPC as a split
// deployment does, and Subscribe streams ride on the Relay call.
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { signHs256 } from "./auth/jwt.js";
import { chatEndToEndSuite } from "./chat-e2e.suite.js";

let running: Running;
const jwtSecret = "chat-e2e-relay-test-secret-0123456789abcdef0123456789";

beforeAll(async () => {
  const config = loadConfig({
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
    SWITCHBOARD_IN_PROCESS_HOP: "false",
  });
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
});
afterAll(async () => {
  await running?.close();
});

chatEndToEndSuite("memory-relayed", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  tokenFor: (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
}));

describe("relayed, not one RPC per stream", () => {
  it("the suite's Subscribe streams rode on Relay calls: the chat server served no Subscribe RPC", async () => {
    const text = await running.metrics!.metrics();
    const started = (method: string): number =>
      text
        .split("\n")
        .filter((l) => l.startsWith("grpc_server_started_total{") && l.includes(`grpc_method="${method}"`))
        .reduce((n, l) => n + Number(l.split(" ").pop()), 0);
    expect(started("Relay")).toBeGreaterThanOrEqual(1);
    expect(started("Subscribe")).toBe(0);
  });
});
