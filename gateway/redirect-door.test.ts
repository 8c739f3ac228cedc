import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { redirectDoorSuite } from "./redirect-door.suite.js";

let running: Running;

beforeAll(async () => {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000" });
  running = await runEmbedded(config, pino({ level: "silent" }));
});
afterAll(() => running.close());

redirectDoorSuite("memory", () => ({ baseUrl: `http://127.0.0.1:${running.gatewayPort}`, engine: running.engine! }));
