// Push for offline members on the memory engine, through the embedded mesh's gateway.
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { signHs256 } from "./auth/jwt.js";
import { PUSH_DELIVERY_ENV, pushDeliverySuite } from "./push-delivery.suite.js";

let running: Running;
const jwtSecret = "push-delivery-test-secret-0123456789abcdef0123456789";

beforeAll(async () => {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000", ...PUSH_DELIVERY_ENV });
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
});
afterAll(async () => {
  await running?.close();
});

pushDeliverySuite("memory", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  tokenFor: (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret),
}));
