// "Country if known": a click carries the country a trusted proxy put in the configured header,
// and nothing when no header is configured (a client's own header is not evidence of anything).
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import type { ClickEvent } from "../gen/switchboard/events/v1/events_pb.js";
import { RedirectService } from "../gen/switchboard/redirect/v1/redirect_pb.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { countryCode } from "../services/analytics/classify.js";
import { waitFor } from "../testkit/processes.js";
import { signHs256 } from "./auth/jwt.js";
import { bearer, withHeaders } from "./chat-wire.js";

const jwtSecret = "country-test-secret-0123456789abcdef0123456789";

async function mesh(env: Record<string, string>): Promise<Running> {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000", ...env });
  return runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
}

function clients(running: Running, owner: string): { shortener: Client<typeof ShortenerService>; redirect: Client<typeof RedirectService> } {
  const transport = createConnectTransport({
    baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
    httpVersion: "1.1",
    interceptors: [withHeaders(bearer(signHs256({ sub: owner, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret)))],
  });
  return { shortener: createClient(ShortenerService, transport), redirect: createClient(RedirectService, transport) };
}

/** Redirects `code` once per header set, and returns the clicks' countries as WatchClicks shows them to the owner. */
async function countriesOf(running: Running, headerSets: Record<string, string>[]): Promise<string[]> {
  const { shortener, redirect } = clients(running, "geo-owner");
  const { link } = await shortener.createLink({ longUrl: "https://example.com/geo" });
  const code = link!.code;
  const got: ClickEvent[] = [];
  const ac = new AbortController();
  const watching = (async () => {
    for await (const m of redirect.watchClicks({ code }, { signal: ac.signal })) got.push(m.click!);
  })().catch(() => {});
  const base = `http://127.0.0.1:${running.gatewayPort}`;
  const click = (headers: Record<string, string>) => fetch(`${base}/${code}`, { redirect: "manual", headers }).then((r) => r.status);
  try {
    // WatchClicks delivers from the moment it is attached: probe until it is.
    await waitFor("the watch attached", async () => {
      expect(await click({ referer: "https://probe.example/" })).toBe(302);
      await new Promise((r) => setTimeout(r, 100));
      return got.length > 0 ? true : undefined;
    }, 10_000);
    for (const [i, headers] of headerSets.entries()) {
      expect(await click({ ...headers, referer: `https://case-${i}.example/` })).toBe(302);
    }
    const cases = () => got.filter((c) => c.referrer.startsWith("case-"));
    await waitFor("every case's click", async () => (cases().length >= headerSets.length ? true : undefined), 10_000);
    return cases().map((c) => c.country);
  } finally {
    ac.abort();
    await watching;
  }
}

describe("click country from a trusted proxy's header", () => {
  let trusted: Running;
  let untrusted: Running;
  beforeAll(async () => {
    trusted = await mesh({ SWITCHBOARD_CLIENT_COUNTRY_HEADER: "CF-IPCountry" });
    untrusted = await mesh({});
  });
  afterAll(async () => {
    await trusted?.close();
    await untrusted?.close();
  });

  it("with SWITCHBOARD_CLIENT_COUNTRY_HEADER set: the header's country, upper-cased; unknown placeholders and junk give none", async () => {
    expect(
      await countriesOf(trusted, [{ "cf-ipcountry": "de" }, { "CF-IPCountry": "BR" }, { "cf-ipcountry": "XX" }, { "cf-ipcountry": "T1" }, { "cf-ipcountry": "<script>" }, {}]),
    ).toEqual(["DE", "BR", "", "", "", ""]);
  });

  it("without it, a client's own country header is ignored", async () => {
    expect(await countriesOf(untrusted, [{ "cf-ipcountry": "DE" }])).toEqual([""]);
  });

  it("countryCode keeps two letters and drops the rest", () => {
    expect(["fr", " Jp ", "US", "", "X", "XX", "ZZ", "T1", "12", "USA", "é1", undefined].map(countryCode)).toEqual(["FR", "JP", "US", "", "", "", "", "", "", "", "", ""]);
  });

  it("refuses a header name that is not one", () => {
    expect(() => loadConfig({ SWITCHBOARD_CLIENT_COUNTRY_HEADER: "cf ipcountry" })).toThrow(/SWITCHBOARD_CLIENT_COUNTRY_HEADER must be an HTTP header name/);
    expect(loadConfig({ SWITCHBOARD_CLIENT_COUNTRY_HEADER: "CloudFront-Viewer-Country" }).gateway.countryHeader).toBe("cloudfront-viewer-country");
  });
});
