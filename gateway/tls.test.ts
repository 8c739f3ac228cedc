// The embedded mesh with TLS on its public port: every door through TLS, HTTP/2 by ALPN for gRPC,
// Connect and gRPC-web, HTTP/1.1 for redirects and REST; short links in https; cleartext refused.
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { ChatService } from "../gen/switchboard/chat/v1/chat_pb.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { ConfigError, loadConfig } from "../platform/config.js";
import { waitFor } from "../testkit/processes.js";
import { signHs256 } from "./auth/jwt.js";
import { bearer, withHeaders } from "./chat-wire.js";

const certFile = fileURLToPath(new URL("../testkit/tls/a.crt", import.meta.url));
const keyFile = fileURLToPath(new URL("../testkit/tls/a.key", import.meta.url));
const ca = readFileSync(certFile);
const jwtSecret = "tls-test-secret-0123456789abcdef0123456789abcd";
const auth = (sub: string): Interceptor => withHeaders(bearer(signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret)));

let running: Running;
let base: string;

beforeAll(async () => {
  const config = loadConfig({
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
    SWITCHBOARD_GATEWAY_TLS_CERT_FILE: certFile,
    SWITCHBOARD_GATEWAY_TLS_KEY_FILE: keyFile,
  });
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
  base = `https://localhost:${running.gatewayPort}`;
});
afterAll(async () => {
  await running?.close();
});

const agent = () => new https.Agent({ ca, keepAlive: true });
const TRANSPORTS = ["gRPC (h2 by ALPN)", "Connect over HTTP/2", "Connect over HTTP/1.1", "gRPC-web over HTTP/2"] as const;
const transports = (user: string): Record<(typeof TRANSPORTS)[number], Transport> => ({
  "gRPC (h2 by ALPN)": createGrpcTransport({ baseUrl: base, interceptors: [auth(user)], nodeOptions: { ca } }),
  "Connect over HTTP/2": createConnectTransport({ baseUrl: base, httpVersion: "2", interceptors: [auth(user)], nodeOptions: { ca } }),
  "Connect over HTTP/1.1": createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [auth(user)], nodeOptions: { agent: agent() } }),
  "gRPC-web over HTTP/2": createGrpcWebTransport({ baseUrl: base, httpVersion: "2", interceptors: [auth(user)], nodeOptions: { ca } }),
});

function httpsGet(path: string): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    https.get(`${base}${path}`, { ca }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
    }).on("error", reject);
  });
}

describe("the gateway with TLS on its public port", () => {
  it.each(TRANSPORTS)("creates a link over %s; short links are https; the code redirects over HTTP/1.1", async (name) => {
    const client = createClient(ShortenerService, transports("tls-user")[name]);
    const longUrl = `https://example.com/over-tls/${encodeURIComponent(name)}`;
    const { link } = await client.createLink({ longUrl });
    // The default public base URL follows the port's scheme (its port is the configured one: 0 here).
    expect(link?.shortUrl).toBe(`https://localhost:0/${link?.code}`);
    const res = await httpsGet(`/${link!.code}`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(longUrl);
  });

  it("speaks HTTP/2 to clients that ask for it by ALPN, HTTP/1.1 to the others", async () => {
    const session = http2.connect(base, { ca });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = session.request({ ":path": "/healthz" });
        req.on("response", (h) => resolve(Number(h[":status"])));
        req.on("error", reject);
        req.resume();
        req.end();
      });
      expect(status).toBe(200);
      expect(session.alpnProtocol).toBe("h2");
    } finally {
      session.close();
    }
    expect((await httpsGet("/healthz")).status).toBe(200);
  });

  it("a chat Subscribe stream over gRPC and TLS gets a message sent over Connect", async () => {
    const aliceChat = createClient(ChatService, transports("alice-tls")["Connect over HTTP/1.1"]);
    const bobChat = createClient(ChatService, transports("bob-tls")["gRPC (h2 by ALPN)"]);
    const { channel } = await aliceChat.createDirectChannel({ peerUserId: "bob-tls" });
    const abort = new AbortController();
    const got: string[] = [];
    let attached = false;
    const reading = (async () => {
      for await (const res of bobChat.subscribe({ deviceId: "phone" }, { signal: abort.signal })) {
        for (const e of res.events) {
          if (e.event.case === "keepAlive") attached = true;
          if (e.event.case === "message") got.push(e.event.value.text);
        }
      }
    })().catch(() => {});
    try {
      await waitFor("bob's stream attached", async () => (attached ? true : undefined), 10_000);
      await aliceChat.sendMessage({ channelId: channel!.channelId, clientMessageId: "m1", text: "over TLS" });
      await waitFor("the message at bob", async () => (got.length > 0 ? true : undefined), 10_000);
      expect(got).toEqual(["over TLS"]);
    } finally {
      abort.abort();
      await reading;
    }
  });

  it("refuses cleartext on the TLS port: HTTP/1.1 and h2c with prior knowledge", async () => {
    await expect(fetch(`http://127.0.0.1:${running.gatewayPort}/healthz`)).rejects.toThrow();
    const h2c = http2.connect(`http://127.0.0.1:${running.gatewayPort}`);
    const failed = await new Promise<boolean>((resolve) => {
      h2c.on("error", () => resolve(true));
      h2c.on("close", () => resolve(true));
      const req = h2c.request({ ":path": "/healthz" });
      req.on("response", () => resolve(false));
      req.on("error", () => resolve(true));
      req.end();
    });
    h2c.destroy();
    expect(failed).toBe(true);
  });
});

describe("TLS configuration", () => {
  it("wants both files or neither, naming the one missing", () => {
    expect(() => loadConfig({ SWITCHBOARD_GATEWAY_TLS_CERT_FILE: certFile })).toThrow(ConfigError);
    expect(() => loadConfig({ SWITCHBOARD_GATEWAY_TLS_CERT_FILE: certFile })).toThrow(
      /SWITCHBOARD_GATEWAY_TLS_KEY_FILE must be set too when SWITCHBOARD_GATEWAY_TLS_CERT_FILE is/,
    );
    expect(() => loadConfig({ SWITCHBOARD_GATEWAY_TLS_KEY_FILE: keyFile })).toThrow(
      /SWITCHBOARD_GATEWAY_TLS_CERT_FILE must be set too when SWITCHBOARD_GATEWAY_TLS_KEY_FILE is/,
    );
    expect(loadConfig({}).gateway.tls).toBeUndefined();
    expect(loadConfig({}).gateway.publicBaseUrl).toBe("http://localhost:8080");
  });
});
