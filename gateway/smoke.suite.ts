/**
 * The gateway smoke suite, run against both engines (smoke.test.ts: memory; smoke.int.test.ts:
 * cluster on real servers): every public door answers, on one port.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { PresenceService } from "../gen/switchboard/presence/v1/presence_pb.js";
import { PushService, SendNotificationRequestSchema } from "../gen/switchboard/push/v1/push_pb.js";
import { RedirectService } from "../gen/switchboard/redirect/v1/redirect_pb.js";
import { RedirectType, ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import type { Link } from "../services/links/ports.js";

const run = promisify(execFile);

export interface SmokeTarget {
  readonly baseUrl: string;
  /** A JWT the gateway accepts (calls other than Resolve, reflection and health need one). */
  readonly token: string;
  /** Where the mesh's metrics listener answers (platform/metrics-server.ts), e.g. http://127.0.0.1:9464/metrics */
  readonly metricsUrl: string;
  insertLink(link: Link): Promise<void>;
}

export function gatewaySmokeSuite(engine: string, target: () => SmokeTarget): void {
  const code = `smk${engine.slice(0, 3)}1`;
  const expiredCode = `exp${engine.slice(0, 3)}1`;
  const link: Link = {
    code,
    longUrl: "https://example.com/a/long/path?q=1",
    ownerId: "user-1",
    createdAt: new Date(),
    redirectType: 301,
  };

  describe(`gateway smoke (${engine} engine)`, () => {
    it("stores the links the doors resolve", async () => {
      await target().insertLink(link);
      await target().insertLink({ ...link, code: expiredCode, expiresAt: new Date(Date.now() - 60_000) });
    });

    it("answers a Connect JSON POST over HTTP/1.1 from the redirect service", async () => {
      const res = await fetch(`${target().baseUrl}/switchboard.redirect.v1.RedirectService/Resolve`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ code }),
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        code,
        longUrl: link.longUrl,
        redirectType: "REDIRECT_TYPE_PERMANENT",
      });
    });

    it("maps domain errors to Connect codes and HTTP statuses", async () => {
      const post = (body: unknown) =>
        fetch(`${target().baseUrl}/switchboard.redirect.v1.RedirectService/Resolve`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      const missing = await post({ code: "nosuch1" });
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ code: "not_found", message: 'link "nosuch1" not found' });
      const bad = await post({ code: "../etc" });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("code:") });
      const malformed = await fetch(`${target().baseUrl}/switchboard.redirect.v1.RedirectService/Resolve`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{not json",
      });
      expect(malformed.status).toBe(400);
    });

    it("reports an expired link without its target", async () => {
      const client = createClient(RedirectService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const res = await client.resolve({ code: expiredCode });
      expect(res.expired).toBe(true);
      expect(res.longUrl).toBe("");
    });

    it("serves gRPC over h2c on the same port", async () => {
      const client = createClient(RedirectService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const res = await client.resolve({ code });
      expect(res.longUrl).toBe(link.longUrl);
      expect(res.redirectType).toBe(RedirectType.PERMANENT);
      await expect(client.resolve({ code: "nosuch1" })).rejects.toMatchObject({ code: Code.NotFound });
    });

    it("serves gRPC-web over HTTP/1.1 on the same port", async () => {
      const transport = createGrpcWebTransport({ baseUrl: target().baseUrl, httpVersion: "1.1" });
      const res = await createClient(RedirectService, transport).resolve({ code });
      expect(res.longUrl).toBe(link.longUrl);
    });

    it("serves the push registry over gRPC (the caller's devices: a list, maybe empty)", async () => {
      const client = createClient(PushService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const headers = { authorization: `Bearer ${target().token}` };
      const res = await client.listDevices({}, { headers });
      expect(Array.isArray(res.devices)).toBe(true);
      const err = await client.listDevices({}).catch((e: unknown) => e);
      expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    });

    it("never forwards internal-only methods", async () => {
      const client = createClient(PushService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const err = await client
        .sendNotification(create(SendNotificationRequestSchema, {}), { headers: { authorization: `Bearer ${target().token}` } })
        .catch((e: unknown) => e as ConnectError);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).rawMessage).toContain("internal and not served by the gateway");
      const presence = createClient(PresenceService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const err2 = await presence
        .reportDevices({ live: [{ userId: "someone", deviceId: "d1" }] }, { headers: { authorization: `Bearer ${target().token}` } })
        .catch((e: unknown) => e as ConnectError);
      expect(err2).toBeInstanceOf(ConnectError);
      expect((err2 as ConnectError).rawMessage).toContain("internal and not served by the gateway");
    });

    it("refuses non-public calls without credentials (Resolve stays public)", async () => {
      const client = createClient(ShortenerService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const err = await client.listLinks({}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    });

    it("lists the public services over gRPC reflection (buf curl, h2c)", async () => {
      const { stdout } = await run("node_modules/.bin/buf", [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        target().baseUrl,
        "--list-services",
      ]);
      const listed = stdout.trim().split("\n").sort();
      expect(listed).toEqual(
        expect.arrayContaining([
          "switchboard.chat.v1.ChatService",
          "switchboard.presence.v1.PresenceService",
          "switchboard.push.v1.PushService",
          "switchboard.redirect.v1.RedirectService",
          "switchboard.shortener.v1.ShortenerService",
        ]),
      );
      expect(listed).not.toContain("switchboard.tokenrange.v1.TokenRangeService");
    });

    it("calls a method through reflection with buf curl (h2c)", async () => {
      const { stdout } = await run("node_modules/.bin/buf", [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-d",
        JSON.stringify({ code }),
        `${target().baseUrl}/switchboard.redirect.v1.RedirectService/Resolve`,
      ]);
      expect(JSON.parse(stdout)).toMatchObject({ code, longUrl: link.longUrl });
    });

    it("serves health and readiness, and Prometheus metrics on their own listener only", async () => {
      const base = target().baseUrl;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      const report = (await ready.json()) as { ready: boolean; degraded: string[]; checks: { name: string; kind: string; ok: boolean; detail: string }[] };
      expect(ready.status).toBe(200);
      expect(report.ready).toBe(true);
      expect(report.degraded).toEqual([]);
      expect(report.checks.filter((c) => c.kind === "backend").length).toBeGreaterThan(0);
      const services = report.checks.filter((c) => c.kind === "service");
      expect(services.filter((c) => !c.name.startsWith("chat/")).map((c) => c.name).sort()).toEqual(
        ["chat", "presence", "push", "redirect", "shortener", "tokenrange"],
      );
      // Every chat server of the registry, by id (no host or address), with its state and load.
      const chatServers = services.filter((c) => c.name.startsWith("chat/"));
      expect(chatServers.length).toBeGreaterThanOrEqual(1);
      for (const c of chatServers) {
        expect(c.name).toMatch(/^chat\/chat-[0-9a-f]{12}$/);
        expect(c.ok).toBe(true);
        expect(c.detail).toMatch(/^serving, \d+ streams$/);
      }
      expect((await fetch(`${base}/metrics`)).status).toBe(404);
      const metrics = await (await fetch(target().metricsUrl)).text();
      expect(metrics).toMatch(/gateway_http_requests_total\{route="connect",protocol="http\/1.1",status="200"\} [1-9]/);
      expect(metrics).toContain("grpc_server_handled_total");
    });

    it("answers CORS preflights for browser clients", async () => {
      const res = await fetch(`${target().baseUrl}/switchboard.redirect.v1.RedirectService/Resolve`, {
        method: "OPTIONS",
        headers: {
          origin: "http://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type,connect-protocol-version",
        },
      });
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe("*");
      expect(res.headers.get("access-control-allow-headers")).toMatch(/Connect-Protocol-Version/i);
      expect(res.headers.get("access-control-allow-methods")).toContain("POST");
    });
  });
}
