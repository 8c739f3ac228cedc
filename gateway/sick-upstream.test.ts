/**
 * A call to an upstream whose process has stopped: the edge answers at once with Unavailable
 * naming the service, over Connect, gRPC and REST, never grpc-js text or an internal address.
 */
import net from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PresenceService } from "../gen/switchboard/presence/v1/presence_pb.js";
import { PushService } from "../gen/switchboard/push/v1/push_pb.js";
import { loadConfig } from "../platform/config.js";
import { openMemoryEngine, type Engine } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import { createMetrics } from "../platform/metrics.js";
import { noUpstreams } from "../services/module.js";
import { presenceModule } from "../services/presence/module.js";
import { pushModule } from "../services/push/module.js";
import { serveService } from "../services/serve.js";
import { shortenerModule } from "../services/shortener/module.js";
import { TEST_MESH_SECRET } from "../testkit/mesh-identity.js";
import { freePort } from "../testkit/processes.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";
import { startEdge, type Edge } from "./edge.js";
import { edgeError } from "./forward.js";

const config = loadConfig({
  SWITCHBOARD_ENGINE: "memory",
  SWITCHBOARD_GATEWAY_PORT: "0",
  SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
  SWITCHBOARD_SHUTDOWN_GRACE_MS: "200",
});
const log = pino({ level: "silent" });
const headers = { authorization: `Bearer ${signHs256({ sub: "sick-bob", exp: Math.floor(Date.now() / 1000) + 600 }, DEV_JWT_SECRET)}` };
const INTERNAL = /127\.0\.0\.1|ECONNREFUSED|Resolution note|No connection established|:\d{4,5}\b/;

let engine: Engine;
/** Accepts TCP and never speaks: a hung process, or a host whose packets vanish. */
let silent: net.Server;
let edge: Edge;
let base: string;

beforeAll(async () => {
  engine = openMemoryEngine(silentLog);
  silent = net.createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  // Presence really ran, then stopped: the gateway's channel had a live upstream that went away.
  const presence = await serveService(presenceModule, { config, log, engine, upstreamAddress: noUpstreams }, { host: "127.0.0.1", port: 0 });
  const presenceAddress = `127.0.0.1:${presence.port}`;
  edge = await startEdge({
    config,
    engine,
    log,
    metrics: createMetrics(),
    env: {},
    redirects: false,
    upstreams: [
      { module: presenceModule, address: presenceAddress },
      { module: shortenerModule, address: `127.0.0.1:${await freePort()}` }, // never started
      { module: pushModule, address: `127.0.0.1:${(silent.address() as net.AddressInfo).port}` },
    ],
  });
  base = `http://127.0.0.1:${edge.port}`;
  await presence.shutdown(0);
});
afterAll(async () => {
  await edge?.close(0);
  await engine?.close();
  silent?.close();
});

async function timedFailure(p: Promise<unknown>): Promise<{ err: ConnectError; ms: number }> {
  const t0 = Date.now();
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  return { err: err as ConnectError, ms: Date.now() - t0 };
}

describe("a stopped upstream", () => {
  for (const [protocol, transport] of [
    ["connect", () => createConnectTransport({ baseUrl: base, httpVersion: "1.1" })],
    ["grpc", () => createGrpcTransport({ baseUrl: base })],
  ] as const) {
    it(`answers Unavailable "presence service is unavailable" over ${protocol}, within two seconds`, async () => {
      const client = createClient(PresenceService, transport());
      for (let i = 0; i < 2; i++) {
        const { err, ms } = await timedFailure(client.heartbeat({ deviceId: "d1" }, { headers }));
        expect(Code[err.code]).toBe(Code[Code.Unavailable]);
        expect(err.rawMessage).toBe("presence service is unavailable");
        expect(ms).toBeLessThan(2_000);
      }
    });
  }

  it("an upstream that accepts and never answers: Unavailable within two seconds though the call has no deadline", async () => {
    const client = createClient(PushService, createGrpcTransport({ baseUrl: base }));
    const method = PushService.methods.find((m) => m.methodKind === "unary")!;
    const call = (client as unknown as Record<string, (req: object, o: object) => Promise<unknown>>)[method.localName]!;
    const { err, ms } = await timedFailure(call.call(client, {}, { headers }));
    expect(Code[err.code]).toBe(Code[Code.Unavailable]);
    expect(err.rawMessage).toBe("push service is unavailable");
    expect(ms).toBeLessThan(2_000);
  });

  it("REST shorten with the shortener down: 503 naming the service, no address", async () => {
    const t0 = Date.now();
    const res = await fetch(`${base}/api/v1/shorten`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ long_url: "https://example.com/sick" }),
    });
    const text = await res.text();
    expect(res.status).toBe(503);
    expect(text).toContain("shortener service is unavailable");
    expect(text).not.toMatch(INTERNAL);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it("/readyz names every service that is down, and stays 200: redirects need none of them", async () => {
    const res = await fetch(`${base}/readyz`);
    const text = await res.text();
    expect(res.status).toBe(200);
    const report = JSON.parse(text) as { ready: boolean; degraded: string[] };
    expect(report.ready).toBe(true);
    expect([...report.degraded].sort()).toEqual(["presence", "push", "shortener"]);
    expect(text).not.toMatch(INTERNAL);
  });
});

describe("edgeError for a named upstream", () => {
  const answered = (message: string, extra: Record<string, string> = {}) =>
    new ConnectError(message, Code.Unavailable, new Headers({ "content-type": "application/grpc+proto", ...extra }));

  it("a service's own clean Unavailable passes with its retry hint", () => {
    const out = edgeError(answered("token-range service cannot be reached: no new codes; retry shortly", { "retry-after-ms": "1000" }), "shortener") as ConnectError;
    expect(out.rawMessage).toBe("token-range service cannot be reached: no new codes; retry shortly");
    expect(out.metadata.get("retry-after-ms")).toBe("1000");
    expect(out.metadata.get("content-type")).toBeNull();
  });

  it("a service's Unavailable carrying a backend address is renamed, keeping the retry hint", () => {
    for (const message of [
      "cassandra is unavailable (not connected to 10.1.2.3:9042: All host(s) tried for query failed)",
      "nats is unavailable (not connected to nats://nats:4222)",
      "redis is unavailable (connect ECONNREFUSED)",
      "upstream [fd00::7]:50051 is gone",
    ]) {
      const out = edgeError(answered(message, { "retry-after-ms": "1000" }), "redirect") as ConnectError;
      expect(out.rawMessage, message).toBe("redirect service is unavailable");
      expect(out.metadata.get("retry-after-ms")).toBe("1000");
    }
  });

  it("no answer at all: Unavailable and deadlines are said in the edge's words; other codes pass", () => {
    const refused = new ConnectError("No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ", Code.Unavailable);
    expect((edgeError(refused, "chat") as ConnectError).rawMessage).toBe("chat service is unavailable");
    const late = new ConnectError("Deadline exceeded after 8.000s,name resolution: 0.008s,Waiting for LB pick", Code.DeadlineExceeded);
    expect(edgeError(late, "chat")).toMatchObject({ code: Code.DeadlineExceeded, rawMessage: "chat service did not answer in time" });
    const notFound = answered("link \"abc\" not found");
    expect((edgeError(new ConnectError(notFound.rawMessage, Code.NotFound), "shortener") as ConnectError).rawMessage).toBe('link "abc" not found');
  });
});
