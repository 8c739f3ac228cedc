// The chat acceptance suite on the memory engine, through the embedded mesh's gateway.
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { signHs256 } from "./auth/jwt.js";
import { chatEndToEndSuite } from "./chat-e2e.suite.js";

let running: Running;
const jwtSecret = "chat-e2e-test-secret-0123456789abcdef0123456789";

beforeAll(async () => {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000" });
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
});
afterAll(async () => {
  await running?.close();
});

chatEndToEndSuite("memory", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  tokenFor: (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
}));
