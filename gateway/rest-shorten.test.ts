// REST door POST /api/v1/shorten and the gateway's auth + rate limits, through the real embedded mesh.
import http from "node:http";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { issueApiKey } from "../services/apikeys/service.js";
import { createApiKeyStore } from "../services/apikeys/store.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";

/** Counts reset each UTC minute: start a counting test well inside one. */
async function awayFromMinuteEnd(): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < 5_000) await new Promise((r) => setTimeout(r, left + 50));
}

const tokenFor = (sub: string) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, DEV_JWT_SECRET);

async function mesh(env: Record<string, string>): Promise<{ running: Running; base: string }> {
  const config = loadConfig({
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "500",
    SWITCHBOARD_PUBLIC_BASE_URL: "https://sb.example",
  });
  const running = await runEmbedded(config, pino({ level: "silent" }), { env });
  return { running, base: `http://127.0.0.1:${running.gatewayPort}` };
}

function post(base: string, body: unknown, headers: Record<string, string>): Promise<Response> {
  return fetch(`${base}/api/v1/shorten`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("REST shorten", () => {
  let m: { running: Running; base: string };
  beforeAll(async () => {
    m = await mesh({ SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "0", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "0" });
  });
  afterAll(() => m.running.close());

  it("creates a link with the seed's response shape; user_id and forged identity headers are ignored", async () => {
    const res = await post(
      m.base,
      { long_url: "https://example.com/a?b=1", custom_alias: "rest-alias-1", expiry_date: "2035-12-31T23:59:59Z", user_id: "mallory", extra: true },
      { authorization: `Bearer ${tokenFor("rest-carol")}`, "x-switchboard-user": "mallory" },
    );
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({
      short_url: "https://sb.example/rest-alias-1",
      code: "rest-alias-1",
      long_url: "https://example.com/a?b=1",
      expiry_date: "2035-12-31T23:59:59.000Z",
      created_at: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
      redirect_type: 302,
      custom: true,
    });
    const client = createClient(ShortenerService, createGrpcTransport({ baseUrl: m.base }));
    const carol = await client.listLinks({}, { headers: { authorization: `Bearer ${tokenFor("rest-carol")}` } });
    expect(carol.links.map((l) => [l.code, l.ownerId])).toEqual([["rest-alias-1", "rest-carol"]]);
    const mallory = await client.listLinks({}, { headers: { authorization: `Bearer ${tokenFor("mallory")}` } });
    expect(mallory.links).toEqual([]);
  });

  it("generates a 7-character code, expiry null, redirect_type 301 when asked; idempotent replay answers 200", async () => {
    const headers = { authorization: `Bearer ${tokenFor("rest-dave")}` };
    const body = { long_url: "https://example.org/", redirect_type: 301, idempotency_key: "k-1" };
    const first = await post(m.base, body, headers);
    expect(first.status).toBe(201);
    const a = (await first.json()) as { code: string; expiry_date: null; redirect_type: number };
    expect(a.code).toMatch(/^[A-Za-z0-9]{7}$/);
    expect(a.expiry_date).toBeNull();
    expect(a.redirect_type).toBe(301);
    const again = await post(m.base, body, headers);
    expect(again.status).toBe(200);
    expect(((await again.json()) as { code: string }).code).toBe(a.code);
  });

  it("accepts API keys (x-api-key and Authorization: ApiKey); the owner is the key's owner", async () => {
    const { key } = await issueApiKey(createApiKeyStore(m.running.engine!), "partner-erin");
    const r1 = await post(m.base, { long_url: "https://example.com/p1" }, { "x-api-key": key });
    expect(r1.status).toBe(201);
    const r2 = await post(m.base, { long_url: "https://example.com/p2" }, { authorization: `ApiKey ${key}` });
    expect(r2.status).toBe(201);
    const client = createClient(ShortenerService, createConnectTransport({ baseUrl: m.base, httpVersion: "1.1" }));
    const mine = await client.listLinks({}, { headers: { "x-api-key": key } });
    expect(mine.links.map((l) => l.longUrl).sort()).toEqual(["https://example.com/p1", "https://example.com/p2"]);
    const both = await post(m.base, { long_url: "https://example.com/p3" }, { "x-api-key": key, authorization: `Bearer ${tokenFor("x")}` });
    expect(both.status).toBe(401);
    expect(((await both.json()) as { error: { message: string } }).error.message).toMatch(/send one credential/);
  });

  it("stops reading a chunked body over 16 KB and answers 413", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${m.base}/api/v1/shorten`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${tokenFor("rest-frank")}`, "transfer-encoding": "chunked" },
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.write(`{"long_url":"https://example.com/${"x".repeat(17_000)}`);
      // Never ends the body: the server must answer without waiting for the rest.
    });
    expect(status).toBe(413);
  });

  it("refuses a non-UTF-8 charset with 415 and invalid UTF-8 with 400", async () => {
    const r = await post(m.base, { long_url: "https://example.com" }, { authorization: `Bearer ${tokenFor("g")}`, "content-type": "application/json; charset=latin1" });
    expect(r.status).toBe(415);
    const bad = await fetch(`${m.base}/api/v1/shorten`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${tokenFor("g")}` },
      body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/UTF-8/);
  });

  it("answers CORS preflight for the REST door", async () => {
    const res = await fetch(`${m.base}/api/v1/shorten`, {
      method: "OPTIONS",
      headers: { origin: "http://app.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization" },
    });
    expect(res.status).toBe(204);
  });
});

describe("rate limits on link creation", () => {
  let m: { running: Running; base: string };
  beforeAll(async () => {
    m = await mesh({ SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "6", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "2" });
  });
  afterAll(() => m.running.close());

  it("per user: REST 429 with Retry-After, then Connect and gRPC ResourceExhausted with retry-after metadata", async () => {
    await awayFromMinuteEnd();
    const headers = { authorization: `Bearer ${tokenFor("limited-user")}` };
    expect((await post(m.base, { long_url: "https://example.com/1" }, headers)).status).toBe(201);
    expect((await post(m.base, { long_url: "https://example.com/2" }, headers)).status).toBe(201);
    const third = await post(m.base, { long_url: "https://example.com/3" }, headers);
    expect(third.status).toBe(429);
    const retry = Number(third.headers.get("retry-after"));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    const body = (await third.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("resource_exhausted");
    expect(body.error.message).toMatch(/at most 2 link creations per minute from this account/);

    for (const transport of [createConnectTransport({ baseUrl: m.base, httpVersion: "1.1" }), createGrpcTransport({ baseUrl: m.base })]) {
      const client = createClient(ShortenerService, transport);
      const err = (await client.createLink({ longUrl: "https://example.com/4" }, { headers }).catch((e: unknown) => e)) as ConnectError;
      expect(err).toBeInstanceOf(ConnectError);
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(Number(err.metadata.get("retry-after"))).toBeGreaterThanOrEqual(1);
    }
    // Reads are not rate limited.
    const client = createClient(ShortenerService, createGrpcTransport({ baseUrl: m.base }));
    expect((await client.listLinks({}, { headers })).links).toHaveLength(2);
  });

  it("per IP: other accounts from the same address are limited too; X-Forwarded-For is not trusted by default", async () => {
    await awayFromMinuteEnd();
    let refused: Response | undefined;
    for (let i = 0; i < 8 && !refused; i++) {
      const r = await post(m.base, { long_url: `https://example.com/ip/${i}` }, { authorization: `Bearer ${tokenFor(`ip-user-${i}`)}`, "x-forwarded-for": `198.51.100.${i}` });
      if (r.status === 429) refused = r;
      else expect(r.status).toBe(201);
    }
    expect(refused).toBeDefined();
    expect(((await refused!.json()) as { error: { message: string } }).error.message).toMatch(/from this IP address/);
  });
});
