/**
 * The gateway from a real browser: Chromium (Debian's, through playwright-core) on a page of
 * another origin, calling through the generated SDK on connect-web (Connect JSON, Connect
 * binary, gRPC-web) and plain fetch (REST). What only a browser checks: CORS preflights and the
 * narrowed origin list, the headers a page may read (status, message, request id), and server
 * streams read through fetch. The memory engine is enough: nothing here depends on storage.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pino from "pino";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { inPage, launchChromium, openPage, servePageOrigin, type PageOrigin } from "../testkit/browser.js";
import type { BrowserProtocol, Failure, LiveEvent } from "../testkit/browser/page-client.js";
import { waitFor } from "../testkit/processes.js";
import { fileURLToPath } from "node:url";
import { signHs256 } from "./auth/jwt.js";
import { bearer, chatClient, LiveDevice, withHeaders } from "./chat-wire.js";

const jwtSecret = "browser-test-secret-0123456789abcdef0123456789ab";
const tokenFor = (sub: string) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret);
const PROTOCOLS: readonly BrowserProtocol[] = ["connect-json", "connect", "grpc-web"];
const run = Date.now().toString(36);
/** Per user: every test below creates with users of its own. */
const CREATES_PER_MINUTE = 4;

let running: Running;
let allowed: PageOrigin;
let other: PageOrigin;
let browser: Browser;
let page: Page;
let base: string;

beforeAll(async () => {
  allowed = await servePageOrigin();
  other = await servePageOrigin();
  const config = loadConfig({
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
    SWITCHBOARD_CORS_ORIGINS: allowed.url,
  });
  running = await runEmbedded(config, pino({ level: "silent" }), {
    env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret, SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: String(CREATES_PER_MINUTE) },
  });
  base = `http://127.0.0.1:${running.gatewayPort}`;
  browser = await launchChromium();
  page = await openPage(browser, allowed);
});
afterAll(async () => {
  await browser?.close();
  await running?.close();
  await allowed?.close();
  await other?.close();
});

const isFailure = (r: object): r is Failure => "error" in r;

async function linksOf(user: string): Promise<number> {
  const shortener = createClient(ShortenerService, createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [withHeaders(bearer(tokenFor(user)))] }));
  return (await shortener.listLinks({})).links.length;
}

describe("the gateway from Chromium on another origin", () => {
  it.each(PROTOCOLS)("creates a link over %s, and the code redirects", async (protocol) => {
    const longUrl = `https://example.com/from-the-browser/${protocol}`;
    const r = await inPage(page, "createLink", base, protocol, tokenFor(`web-${protocol}-${run}`), longUrl);
    if (isFailure(r)) throw new Error(`${protocol}: ${r.error.code}: ${r.error.message}`);
    expect(r.code).toMatch(/^[0-9A-Za-z]{7}$/);
    const res = await fetch(`${base}/${r.code}`, { redirect: "manual" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe(longUrl);
  });

  it.each(PROTOCOLS)("shows the page the error's code and message over %s", async (protocol) => {
    const anonymous = await inPage(page, "createLink", base, protocol, undefined, "https://example.com/x");
    expect(anonymous).toMatchObject({ error: { code: "Unauthenticated" } });
    const bad = await inPage(page, "createLink", base, protocol, tokenFor(`bad-${protocol}-${run}`), "javascript:alert(1)");
    expect(bad).toMatchObject({ error: { code: "InvalidArgument" } });
    expect((bad as Failure).error.message).toMatch(/long_url/);
  });

  it("REST: a page shortens with fetch and reads the answer, its errors and the request id", async () => {
    const ok = await inPage(page, "shortenRest", base, tokenFor(`rest-${run}`), JSON.stringify({ long_url: "https://example.com/rest-from-page" }));
    expect(ok.status).toBe(201);
    expect(JSON.parse(ok.body)).toMatchObject({ long_url: "https://example.com/rest-from-page" });
    expect(ok.requestId).toMatch(/\S/);
    const refused = await inPage(page, "shortenRest", base, undefined, JSON.stringify({ long_url: "https://example.com/y" }));
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: "unauthenticated" } });
    const malformed = await inPage(page, "shortenRest", base, tokenFor(`rest-${run}`), "{not json");
    expect(malformed.status).toBe(400);
    expect(JSON.parse(malformed.body)).toMatchObject({ error: { code: "invalid_argument", message: expect.stringMatching(/\S/) } });
  });

  it("a caller over its creation limit is told when to come back, over every protocol and REST", async () => {
    const token = tokenFor(`busy-${run}`);
    for (let i = 0; i < CREATES_PER_MINUTE; i++) {
      const r = await inPage(page, "createLink", base, "connect", token, `https://example.com/busy/${i}`);
      expect(isFailure(r), `create ${i}`).toBe(false);
    }
    for (const protocol of PROTOCOLS) {
      const r = await inPage(page, "createLink", base, protocol, token, "https://example.com/busy/over");
      expect(r, protocol).toMatchObject({ error: { code: "ResourceExhausted", retryAfter: expect.stringMatching(/^[1-9][0-9]*$/) } });
    }
    const rest = await inPage(page, "shortenRest", base, token, JSON.stringify({ long_url: "https://example.com/busy/rest" }));
    expect(rest.status).toBe(429);
    expect(rest.retryAfter).toMatch(/^[1-9][0-9]*$/);
    expect(JSON.parse(rest.body)).toMatchObject({ error: { code: "resource_exhausted" } });
  });

  it("an origin not on SWITCHBOARD_CORS_ORIGINS is refused by the browser, and nothing is stored", async () => {
    const stranger = `stranger-${run}`;
    const page2 = await openPage(browser, other);
    try {
      for (const protocol of PROTOCOLS) {
        const r = await inPage(page2, "createLink", base, protocol, tokenFor(stranger), "https://example.com/from-elsewhere");
        // What fetch says when the preflight is refused: the SDK cannot tell why, by design.
        expect(r, protocol).toMatchObject({ error: { code: "Unknown", message: expect.stringMatching(/fetch/i) } });
      }
    } finally {
      await page2.close();
    }
    expect(await linksOf(stranger)).toBe(0);
    // The same calls from the allowed origin store links: the refusal above was the origin's.
    const r = await inPage(page, "createLink", base, "connect", tokenFor(stranger), "https://example.com/from-the-right-place");
    expect(isFailure(r)).toBe(false);
    expect(await linksOf(stranger)).toBe(1);
  });

  it.each(PROTOCOLS)("an owner's page watches a link's clicks live over %s; someone else's page is refused", async (protocol) => {
    const owner = tokenFor(`dash-${protocol}-${run}`);
    const made = await inPage(page, "createLink", base, "connect", owner, "https://example.com/dashboard");
    if (isFailure(made)) throw new Error(`${made.error.code}: ${made.error.message}`);
    const name = `clicks-${protocol}`;
    const stranger = `stranger-clicks-${protocol}`;
    await inPage(page, "watchClicks", base, protocol, owner, made.code, name);
    await inPage(page, "watchClicks", base, protocol, tokenFor(`nosy-${protocol}-${run}`), made.code, stranger);
    try {
      // Clicks reach a watch from the moment it is attached: click until one shows up.
      await waitFor(`a click on ${name}`, async () => {
        await fetch(`${base}/${made.code}`, { redirect: "manual", headers: { referer: `https://from-${protocol}.example/` } });
        const got = await inPage(page, "received", name);
        if (got.end !== undefined) throw new Error(`${name} ended: ${got.end}`);
        return got.events.length > 0 ? true : undefined;
      }, 20_000);
      expect((await inPage(page, "received", name)).events[0]).toEqual({ kind: "click", text: `${made.code} from-${protocol}.example ` });
      const nosy = await waitFor(`${stranger} refused`, async () => (await inPage(page, "received", stranger)).end, 20_000);
      expect(nosy).toBe("NotFound");
      expect((await inPage(page, "received", stranger)).events).toEqual([]);
    } finally {
      await inPage(page, "unsubscribe", name);
      await inPage(page, "unsubscribe", stranger);
    }
  });

  it.each(PROTOCOLS)("a stream the server ends reaches the page with its code over %s (a newer stream of the device: Aborted)", async (protocol) => {
    const token = tokenFor(`carol-${protocol}-${run}`);
    const [older, newer] = [`old-${protocol}`, `new-${protocol}`];
    await inPage(page, "subscribe", base, protocol, token, "tablet", older);
    try {
      await waitFor(`${older} attached`, async () => ((await inPage(page, "received", older)).events.length > 0 ? true : undefined), 20_000);
      await inPage(page, "subscribe", base, protocol, token, "tablet", newer);
      const ended = await waitFor(`${older} ended`, async () => (await inPage(page, "received", older)).end, 20_000);
      expect(ended).toBe("Aborted");
      const current = await inPage(page, "received", newer);
      expect(current.end).toBeUndefined();
    } finally {
      await inPage(page, "unsubscribe", older);
      await inPage(page, "unsubscribe", newer);
    }
  });

  it("chat: three browser devices on Connect JSON, Connect binary and gRPC-web streams get every message once, live", async () => {
    const alice = `alice-${run}`;
    const bob = `bob-${run}`;
    const aliceToken = tokenFor(alice);
    const made = await inPage(page, "createDirectChannel", base, "connect-json", aliceToken, bob);
    if (isFailure(made)) throw new Error(`${made.error.code}: ${made.error.message}`);
    const channelId = made.channelId;

    const names = PROTOCOLS.map((p) => `alice-${p}`);
    PROTOCOLS.forEach((protocol, i) => void inPage(page, "subscribe", base, protocol, aliceToken, `web-${protocol}`, names[i]!));
    const bobDevice = new LiveDevice(bob, "phone", "connect-1.1", () => chatClient(base, "connect-1.1", bearer(tokenFor(bob)))).start();
    try {
      // The first event of a stream is a keep-alive: from then on it misses nothing.
      for (const name of names) {
        await waitFor(`${name} attached`, async () => {
          const got = await inPage(page, "received", name);
          if (got.end !== undefined) throw new Error(`${name} ended: ${got.end}`);
          return got.events.some((e) => e.kind === "keepAlive") ? true : undefined;
        }, 20_000);
      }
      await waitFor("bob attached", async () => (bobDevice.of("keepAlive").length > 0 ? true : undefined), 20_000);

      const fromBob = await chatClient(base, "grpc", bearer(tokenFor(bob))).sendMessage({ channelId, clientMessageId: `b-${run}`, text: "hello from node" });
      const fromAlice = await inPage(page, "sendMessage", base, "grpc-web", aliceToken, channelId, `a-${run}`, "hello from the browser, ✓");
      if (isFailure(fromAlice)) throw new Error(`${fromAlice.error.code}: ${fromAlice.error.message}`);
      const expected = [fromBob.message!.messageId.toString(), fromAlice.messageId];

      const messagesOf = (events: readonly LiveEvent[]) => events.filter((e) => e.kind === "message" && e.channelId === channelId);
      for (const name of names) {
        const got = await waitFor(`both messages at ${name}`, async () => {
          const r = await inPage(page, "received", name);
          return messagesOf(r.events).length >= 2 ? r : undefined;
        }, 20_000);
        await new Promise((r) => setTimeout(r, 200)); // a duplicate would arrive right behind
        const msgs = messagesOf((await inPage(page, "received", name)).events);
        expect(msgs.map((m) => m.messageId), name).toEqual(expected);
        expect(msgs.map((m) => m.text), name).toEqual(["hello from node", "hello from the browser, ✓"]);
        expect(got.end, name).toBeUndefined();
      }
      await waitFor("alice's browser message at bob's device", async () =>
        bobDevice.messageIds(channelId).map(String).includes(fromAlice.messageId) ? true : undefined, 20_000);
      expect(bobDevice.messageIds(channelId).map(String)).toEqual(expected);
    } finally {
      for (const name of names) await inPage(page, "unsubscribe", name);
      bobDevice.stop();
    }
  });
});

describe("the gateway with TLS, from Chromium: HTTP/2 by ALPN", () => {
  let tlsMesh: Running;
  let tlsBase: string;
  let tlsPage: Page;
  const tlsFile = (name: string) => fileURLToPath(new URL(`../testkit/tls/${name}`, import.meta.url));

  beforeAll(async () => {
    const config = loadConfig({
      SWITCHBOARD_ENGINE: "memory",
      SWITCHBOARD_GATEWAY_PORT: "0",
      SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
      SWITCHBOARD_CORS_ORIGINS: allowed.url,
      SWITCHBOARD_GATEWAY_TLS_CERT_FILE: tlsFile("a.crt"),
      SWITCHBOARD_GATEWAY_TLS_KEY_FILE: tlsFile("a.key"),
    });
    tlsMesh = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
    tlsBase = `https://localhost:${tlsMesh.gatewayPort}`;
    // The test certificate is self-signed: this browser context accepts it, as a trusted one would be.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    tlsPage = await context.newPage();
    await tlsPage.goto(allowed.url);
    await tlsPage.waitForFunction(() => "switchboard" in globalThis);
  });
  afterAll(async () => {
    await tlsPage?.context().close();
    await tlsMesh?.close();
  });

  /** Requests the gateway answered over HTTP/2, from its own counter. */
  const h2Requests = async (): Promise<number> => {
    const text = await tlsMesh.metrics!.getSingleMetricAsString("gateway_http_requests_total");
    return text
      .split("\n")
      .filter((l) => l.includes('protocol="http/2.0"'))
      .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
  };

  it("links over Connect JSON, Connect binary and gRPC-web, and a live Subscribe stream, all over HTTP/2", async () => {
    const before = await h2Requests();
    const token = tokenFor(`tls-web-${run}`);
    for (const protocol of PROTOCOLS) {
      const r = await inPage(tlsPage, "createLink", tlsBase, protocol, token, `https://example.com/tls/${protocol}`);
      if (isFailure(r)) throw new Error(`${protocol}: ${r.error.code}: ${r.error.message}`);
      expect(r.shortUrl.startsWith("https://")).toBe(true);
    }
    const made = await inPage(tlsPage, "createDirectChannel", tlsBase, "connect", token, `tls-peer-${run}`);
    if (isFailure(made)) throw new Error(`${made.error.code}: ${made.error.message}`);
    await inPage(tlsPage, "subscribe", tlsBase, "connect", token, "laptop", "tls-sub");
    try {
      await waitFor("the stream attached", async () => ((await inPage(tlsPage, "received", "tls-sub")).events.length > 0 ? true : undefined), 20_000);
      const sent = await inPage(tlsPage, "sendMessage", tlsBase, "grpc-web", token, made.channelId, `tls-${run}`, "over h2");
      if (isFailure(sent)) throw new Error(`${sent.error.code}: ${sent.error.message}`);
      const got = await waitFor("the message on the stream", async () => {
        const r = await inPage(tlsPage, "received", "tls-sub");
        return r.events.find((e) => e.kind === "message");
      }, 20_000);
      expect(got).toMatchObject({ messageId: sent.messageId, text: "over h2" });
    } finally {
      await inPage(tlsPage, "unsubscribe", "tls-sub");
    }
    // 3 creates, the channel, the stream and the send (preflights too: they are requests as well).
    expect((await h2Requests()) - before).toBeGreaterThanOrEqual(6);
  });
});
