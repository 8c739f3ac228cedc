// The redirect door's behaviour, run on both engines (redirect-door.test.ts, redirect-door.int.test.ts).
import { randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LinkChangedSchema, LinkChangeKind } from "../gen/switchboard/events/v1/events_pb.js";
import type { Engine } from "../platform/engine.js";
import { createClickStatsStore } from "../services/analytics/store.js";
import type { Link } from "../services/links/ports.js";
import { createLinkStore } from "../services/links/store.js";
import { linkChangedSubject } from "../services/redirect/subjects.js";

export interface DoorTarget {
  readonly baseUrl: string;
  readonly engine: Engine;
}

const CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the engine's backends are all connected (cluster clients connect in the background). */
export async function waitForBackends(engine: Engine, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await engine.readiness();
    if (r.ready) return;
    if (Date.now() > deadline) throw new Error(`backends not ready: ${JSON.stringify(r.checks)}`);
    await sleep(200);
  }
}

export function redirectDoorSuite(engineName: string, target: () => DoorTarget): void {
  const tag = randomBytes(3).toString("hex");
  const code = (name: string) => `${name}${tag}`;
  const insert = async (name: string, over: Partial<Link> = {}) => {
    const store = await createLinkStore(target().engine);
    const c = code(name);
    await store.insertIfAbsent({
      code: c,
      longUrl: `https://example.com/${name}`,
      ownerId: "owner-1",
      createdAt: new Date(),
      redirectType: 302,
      ...over,
    });
    return c;
  };
  const get = (path: string, init: RequestInit = {}) =>
    fetch(`${target().baseUrl}${path}`, { redirect: "manual", ...init, headers: { "user-agent": CHROME, ...(init.headers as object) } });

  describe(`redirect door (${engineName})`, () => {
    it("302 with Location, no-store and an empty body; the query string is ignored", async () => {
      const c = await insert("tmp");
      const res = await get(`/${c}?utm=1`);
      expect(res.status).toBe(302);
      expect(res.headers.get("location")).toBe("https://example.com/tmp");
      expect(res.headers.get("cache-control")).toBe("private, no-store");
      expect(await res.text()).toBe("");
    });

    it("301 with a short public max-age", async () => {
      const c = await insert("perm", { redirectType: 301 });
      const res = await get(`/${c}`);
      expect(res.status).toBe(301);
      expect(res.headers.get("location")).toBe("https://example.com/perm");
      expect(res.headers.get("cache-control")).toBe("public, max-age=300");
    });

    it("404 for an unknown code, 410 for an expired link", async () => {
      const unknown = await get(`/${code("missing")}`);
      expect(unknown.status).toBe(404);
      expect(unknown.headers.get("location")).toBeNull();
      const c = await insert("old", { expiresAt: new Date(Date.now() - 1_000) });
      const gone = await get(`/${c}`);
      expect(gone.status).toBe(410);
      expect(gone.headers.get("location")).toBeNull();
    });

    it("browsers get small HTML pages for /, an unknown code and an expired link; API clients keep text and JSON", async () => {
      const browser = { accept: FIREFOX_ACCEPT };
      const home = await get("/", { headers: browser });
      expect(home.status).toBe(200);
      expect(home.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(home.headers.get("vary")).toMatch(/accept/i);
      expect(home.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(await home.text()).toMatch(/^<!doctype html>[\s\S]*Switchboard[\s\S]*<\/html>\n$/);

      const missing = code("nohtml");
      const notFound = await get(`/${missing}`, { headers: browser });
      expect(notFound.status).toBe(404);
      expect(notFound.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(await notFound.text()).toContain(`<code>${missing}</code>`);
      const old = await insert("oldhtml", { expiresAt: new Date(Date.now() - 1_000) });
      const gone = await get(`/${old}`, { headers: browser });
      expect(gone.status).toBe(410);
      expect(gone.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(await gone.text()).toMatch(/expired/);
      const headGone = await get(`/${old}`, { method: "HEAD", headers: browser });
      expect(headGone.status).toBe(410);
      expect(headGone.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(await headGone.text()).toBe("");

      // A redirect is a redirect for everyone.
      const live = await insert("livehtml");
      const redirected = await get(`/${live}`, { headers: browser });
      expect(redirected.status).toBe(302);
      expect(await redirected.text()).toBe("");

      for (const accept of ["application/json", "*/*", "application/json, text/html;q=0.5", undefined]) {
        const headers: Record<string, string> = accept === undefined ? {} : { accept };
        const apiHome = await get("/", { headers });
        expect(apiHome.status, `${accept}`).toBe(404);
        expect(apiHome.headers.get("content-type"), `${accept}`).toContain("application/json");
        await apiHome.arrayBuffer();
        const apiNotFound = await get(`/${missing}`, { headers });
        expect(apiNotFound.status).toBe(404);
        expect(apiNotFound.headers.get("content-type")).toBe("text/plain; charset=utf-8");
        expect(await apiNotFound.text()).toBe("Not Found\n");
        const apiGone = await get(`/${old}`, { headers });
        expect(apiGone.status).toBe(410);
        expect(await apiGone.text()).toBe("Gone\n");
      }
    });

    it("HEAD answers like GET without a body", async () => {
      const c = await insert("head");
      const res = await get(`/${c}`, { method: "HEAD" });
      expect(res.status).toBe(302);
      expect(res.headers.get("location")).toBe("https://example.com/head");
      expect(await res.text()).toBe("");
      expect((await get(`/${code("nohead")}`, { method: "HEAD" })).status).toBe(404);
    });

    it("never redirects to a non-http(s) target, even one stored directly", async () => {
      for (const [name, url] of [
        ["js", "javascript:alert(1)"],
        ["data", "data:text/html,<script>alert(1)</script>"],
        ["ftp", "ftp://example.com/x"],
        ["rel", "//evil.example/x"],
      ] as const) {
        const c = await insert(name, { longUrl: url });
        const res = await get(`/${c}`);
        expect(res.status, url).toBe(404);
        expect(res.headers.get("location")).toBeNull();
      }
    });

    it("leaves reserved and non-code paths to the other routes", async () => {
      expect((await get("/healthz")).status).toBe(200);
      await insert("x", { code: "api" }).catch(() => undefined);
      const api = await get("/api");
      expect(api.headers.get("location")).toBeNull();
      expect((await get(`/${"a".repeat(33)}`)).headers.get("content-type")).toContain("application/json");
      expect((await get("/a.b")).headers.get("content-type")).toContain("application/json");
    });

    it("stops redirecting to the old target once LinkChanged is published", async () => {
      const c = await insert("upd", { longUrl: "https://old.example/" });
      expect((await get(`/${c}`)).headers.get("location")).toBe("https://old.example/");
      const store = await createLinkStore(target().engine);
      await store.delete(c);
      target().engine.bus.publish(
        linkChangedSubject(c),
        toBinary(LinkChangedSchema, create(LinkChangedSchema, { code: c, kind: LinkChangeKind.DELETED, version: 2n })),
      );
      const deadline = Date.now() + 1_000;
      let status = 0;
      while (Date.now() < deadline) {
        status = (await get(`/${c}`)).status;
        if (status === 404) break;
        await sleep(20);
      }
      expect(status).toBe(404);
    });

    it("records clicks: humans counted, bots, previews and HEAD flagged as bot", async () => {
      const c = await insert("clk");
      for (let i = 0; i < 3; i++) expect((await get(`/${c}`, { headers: { referer: "https://Twitter.com/x/status/1" } })).status).toBe(302);
      await get(`/${c}`);
      await get(`/${c}`, { headers: { "user-agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)" } });
      await get(`/${c}`, { headers: { "user-agent": "curl/8.5.0" } });
      await get(`/${c}`, { method: "HEAD" });
      expect((await get(`/${code("noclick")}`)).status).toBe(404); // no click for a 404
      const stats = createClickStatsStore(target().engine);
      const deadline = Date.now() + 15_000;
      let st = await stats.get(c);
      while (st.total < 7 && Date.now() < deadline) {
        await sleep(100);
        st = await stats.get(c);
      }
      expect(st.total).toBe(7);
      expect(st.human).toBe(4);
      expect(st.bot).toBe(3);
      expect(st.perDay).toEqual([{ day: new Date().toISOString().slice(0, 10), human: 4, bot: 3 }]);
      expect(st.perReferrer).toEqual([
        { referrer: "twitter.com", human: 3 },
        { referrer: "", human: 1 },
      ]);
      expect((await stats.get(code("noclick"))).total).toBe(0);
    }, 30_000);
  });
}
