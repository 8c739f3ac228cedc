import { afterAll, beforeAll } from "vitest";
import pino from "pino";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { startMetricsServer, type MetricsServer } from "../platform/metrics-server.js";
import { createLinkStore } from "../services/links/store.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";
import { linksEndToEndSuite } from "./links-e2e.suite.js";
import { gatewaySmokeSuite } from "./smoke.suite.js";

let running: Running;
let metricsServer: MetricsServer;

beforeAll(async () => {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000" });
  running = await runEmbedded(config, pino({ level: "silent" }));
  metricsServer = await startMetricsServer(running.metrics!, "127.0.0.1", 0);
});
afterAll(async () => {
  await metricsServer?.close();
  await running.close();
});

gatewaySmokeSuite("memory", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  metricsUrl: `http://127.0.0.1:${metricsServer.port}/metrics`,
  token: signHs256({ sub: "smoke-user", exp: Math.floor(Date.now() / 1000) + 3600 }, DEV_JWT_SECRET),
  insertLink: async (link) => {
    await (await createLinkStore(running.engine!)).insertIfAbsent(link);
  },
}));

linksEndToEndSuite("memory", () => ({
  baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
  token: signHs256({ sub: "e2e-user", exp: Math.floor(Date.now() / 1000) + 3600 }, DEV_JWT_SECRET),
}));
