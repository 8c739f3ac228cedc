/**
 * The links slice end to end through one gateway port, run on both engines: create over REST,
 * Connect JSON (HTTP/1.1), gRPC (h2c) and gRPC-web; follow the short links; count the clicks.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { RedirectType, ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { waitFor } from "../testkit/processes.js";

export interface E2eTarget {
  readonly baseUrl: string;
  readonly token: string;
}

const BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const SLACK_PREVIEW_UA = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";

export function linksEndToEndSuite(engine: string, target: () => E2eTarget): void {
  describe(`links end to end through the gateway (${engine} engine)`, () => {
    const auth = () => ({ authorization: `Bearer ${target().token}` });
    const follow = (code: string, init: RequestInit = {}) =>
      fetch(`${target().baseUrl}/${code}`, { redirect: "manual", ...init });
    const codes: Record<string, string> = {};

    it("creates over REST (POST /api/v1/shorten)", async () => {
      const res = await fetch(`${target().baseUrl}/api/v1/shorten`, {
        method: "POST",
        headers: { ...auth(), "content-type": "application/json" },
        body: JSON.stringify({ long_url: "https://example.com/rest", user_id: "someone-else" }),
      });
      expect(res.status).toBe(201);
      const body = (await res.json()) as { code: string; short_url: string; long_url: string };
      expect(body.code).toMatch(/^[A-Za-z0-9]{7}$/);
      expect(body.short_url).toMatch(new RegExp(`/${body.code}$`));
      expect(body.long_url).toBe("https://example.com/rest");
      codes["rest"] = body.code;
    });

    it("creates over Connect JSON on HTTP/1.1", async () => {
      const res = await fetch(`${target().baseUrl}/switchboard.shortener.v1.ShortenerService/CreateLink`, {
        method: "POST",
        headers: { ...auth(), "content-type": "application/json" },
        body: JSON.stringify({ longUrl: "https://example.com/connect", customAlias: `cj-${engine}` }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { link: { code: string; ownerId: string } };
      expect(body.link.code).toBe(`cj-${engine}`);
      codes["connect"] = body.link.code;
    });

    it("creates over gRPC (h2c), 301 on request", async () => {
      const client = createClient(ShortenerService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const res = await client.createLink(
        { longUrl: "https://example.com/grpc", redirectType: RedirectType.PERMANENT },
        { headers: auth() },
      );
      codes["grpc"] = res.link!.code;
    });

    it("creates over gRPC-web (HTTP/1.1), expiring soon", async () => {
      const transport = createGrpcWebTransport({ baseUrl: target().baseUrl, httpVersion: "1.1" });
      const res = await createClient(ShortenerService, transport).createLink(
        { longUrl: "https://example.com/grpcweb", expireTime: timestampFromDate(new Date(Date.now() + 1500)) },
        { headers: auth() },
      );
      codes["grpcweb"] = res.link!.code;
    });

    it("redirects 302 by default and 301 when asked, with Location", async () => {
      const r302 = await follow(codes["rest"]!);
      expect(r302.status).toBe(302);
      expect(r302.headers.get("location")).toBe("https://example.com/rest");
      const connect = await follow(codes["connect"]!);
      expect(connect.status).toBe(302);
      expect(connect.headers.get("location")).toBe("https://example.com/connect");
      const r301 = await follow(codes["grpc"]!);
      expect(r301.status).toBe(301);
      expect(r301.headers.get("location")).toBe("https://example.com/grpc");
    });

    it("answers 404 for an unknown code and 410 once a link expired", async () => {
      expect((await follow("Zz9nope")).status).toBe(404);
      expect((await follow(codes["grpcweb"]!)).status).toBe(302);
      await new Promise((r) => setTimeout(r, 1_700));
      const gone = await follow(codes["grpcweb"]!);
      expect(gone.status).toBe(410);
      expect(gone.headers.get("location")).toBeNull();
    });

    it("counts human clicks and leaves out a preview bot and HEAD", async () => {
      const code = codes["connect"]!;
      // One human click was made above; two more, then a Slack preview and a HEAD.
      for (let i = 0; i < 2; i++) expect((await follow(code, { headers: { "user-agent": BROWSER_UA } })).status).toBe(302);
      expect((await follow(code, { headers: { "user-agent": SLACK_PREVIEW_UA } })).status).toBe(302);
      expect((await follow(code, { method: "HEAD", headers: { "user-agent": BROWSER_UA } })).status).toBe(302);
      const client = createClient(ShortenerService, createGrpcTransport({ baseUrl: target().baseUrl }));
      const stats = await waitFor(
        "the click counters",
        async () => {
          const s = await client.getLinkStats({ code, days: 7 }, { headers: auth() });
          return s.totalClicks >= 5n ? s : undefined;
        },
        30_000,
      );
      // fetch's default user agent (undici) is not a browser: that first click is a bot too.
      expect(stats.totalClicks).toBe(5n);
      expect(stats.humanClicks).toBe(2n);
      expect(stats.botClicks).toBe(3n);
    });
  });
}
