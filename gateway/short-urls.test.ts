// The gateway owns the public base URL: a shortener started without SWITCHBOARD_PUBLIC_BASE_URL
// (its default points at localhost) still hands out links on the gateway's host, over gRPC
// (CreateLink, GetLink, UpdateLink, ListLinks, BulkCreateLinks) and REST.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { openMemoryEngine, type Engine } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import type { RunningGrpcServer } from "../platform/grpc/server.js";
import { createMetrics } from "../platform/metrics.js";
import type { ServiceName } from "../platform/config.js";
import { serveService } from "../services/serve.js";
import { shortenerModule } from "../services/shortener/module.js";
import { tokenrangeModule } from "../services/tokenrange/module.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";
import { startEdge, type Edge } from "./edge.js";

const GATEWAY_BASE = "https://go.example";
const log = pino({ level: "silent" });
let engine: Engine;
const servers: RunningGrpcServer[] = [];
let edge: Edge;
let base: string;

beforeAll(async () => {
  engine = openMemoryEngine(silentLog);
  // The services' environment has no public base URL at all.
  const serviceConfig = loadConfig({});
  expect(serviceConfig.gateway.publicBaseUrl).not.toContain("go.example");
  const addresses: Partial<Record<ServiceName, string>> = {};
  const upstreamAddress = (n: ServiceName) => addresses[n]!;
  for (const module of [tokenrangeModule, shortenerModule]) {
    const s = await serveService(module, { config: serviceConfig, log, engine, upstreamAddress }, { host: "127.0.0.1", port: 0, metrics: createMetrics() });
    servers.push(s);
    addresses[module.name] = `127.0.0.1:${s.port}`;
  }
  const gatewayConfig = loadConfig({ SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_PUBLIC_BASE_URL: GATEWAY_BASE, SWITCHBOARD_SHUTDOWN_GRACE_MS: "200" });
  edge = await startEdge({
    config: gatewayConfig,
    engine,
    log,
    metrics: createMetrics(),
    env: { SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "0", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "0" },
    redirects: false,
    upstreams: [tokenrangeModule, shortenerModule].map((module) => ({ module, address: addresses[module.name]! })),
  });
  base = `http://127.0.0.1:${edge.port}`;
});

afterAll(async () => {
  await edge?.close(200);
  for (const s of servers) await s.shutdown(200);
  await engine?.close();
});

const auth = { headers: { authorization: `Bearer ${signHs256({ sub: "url-owner", exp: Math.floor(Date.now() / 1000) + 600 }, DEV_JWT_SECRET)}` } };

describe("short_url is built by the gateway", () => {
  it("every Link the gateway forwards carries the gateway's base URL", async () => {
    const client = createClient(ShortenerService, createGrpcTransport({ baseUrl: base }));
    const created = (await client.createLink({ longUrl: "https://example.com/a" }, auth)).link!;
    expect(created.shortUrl).toBe(`${GATEWAY_BASE}/${created.code}`);
    const got = (await client.getLink({ code: created.code }, auth)).link!;
    expect(got.shortUrl).toBe(`${GATEWAY_BASE}/${created.code}`);
    const updated = (await client.updateLink({ code: created.code, link: { longUrl: "https://example.com/b" }, updateMask: { paths: ["long_url"] } }, auth)).link!;
    expect(updated.shortUrl).toBe(`${GATEWAY_BASE}/${created.code}`);
    const listed = (await client.listLinks({}, auth)).links;
    expect(listed.map((l) => l.shortUrl)).toEqual([`${GATEWAY_BASE}/${created.code}`]);
    const bulk = await client.bulkCreateLinks(
      (async function* () {
        yield { itemId: "one", longUrl: "https://example.com/bulk-1" };
        yield { itemId: "two", longUrl: "https://example.com/bulk-2", customAlias: "url-bulk-alias" };
      })(),
      auth,
    );
    const links = bulk.results.map((r) => (r.result.case === "link" ? r.result.value : undefined));
    expect(links.map((l) => l?.shortUrl)).toEqual([`${GATEWAY_BASE}/${links[0]!.code}`, `${GATEWAY_BASE}/url-bulk-alias`]);
  });

  it("REST POST /api/v1/shorten answers with the gateway's host", async () => {
    const res = await fetch(`${base}/api/v1/shorten`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth.headers },
      body: JSON.stringify({ long_url: "https://example.com/rest", custom_alias: "url-rest-alias" }),
    });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { short_url: string }).short_url).toBe(`${GATEWAY_BASE}/url-rest-alias`);
  });
});
