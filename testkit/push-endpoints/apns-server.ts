/**
 * A local APNs over h2c: POST /3/device/<hex token> with token-based auth. It verifies the
 * provider JWT (ES256, kid = key id, iss = team id, iat under an hour old) with the key's public
 * key, the topic and push type headers, and answers like APNs: 200 with apns-id, errors as
 * {"reason": "..."} (410 adds "timestamp").
 */
import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { TestApnsKey } from "./credentials.js";
import { verifyJwt } from "./jws.js";
import { encodeBody, readBody, Script, type Received } from "./script.js";

export interface ApnsServer {
  /** http://127.0.0.1:<port>, an h2c origin. */
  readonly url: string;
  readonly received: Received[];
  /** Provider tokens seen, in order. */
  readonly providerTokens: string[];
  /** HTTP/2 sessions accepted so far. */
  sessions(): number;
  readonly script: Script;
  /** Sends GOAWAY on every open session (as APNs does before closing a connection). */
  goaway(): void;
  close(): Promise<void>;
}

export function apnsError(status: number, reason: string): { status: number; body: unknown } {
  return { status, body: status === 410 ? { reason, timestamp: Date.now() } : { reason } };
}

export async function startApnsServer(options: { key: TestApnsKey; topic: string }): Promise<ApnsServer> {
  const received: Received[] = [];
  const providerTokens: string[] = [];
  const script = new Script();
  const open = new Set<http2.ServerHttp2Session>();
  let sessions = 0;
  const server = http2.createServer();
  server.on("session", (s) => {
    sessions++;
    open.add(s);
    s.on("close", () => open.delete(s));
  });
  server.on("stream", async (stream, headers) => {
    const raw = (await readBody(stream)).toString("utf8");
    const reply = (status: number, body?: unknown, extra: Record<string, string> = {}): void => {
      const { text, json } = encodeBody(body);
      stream.respond({ ":status": status, "apns-id": String(headers["apns-id"] ?? randomUUID()), ...extra, ...(json ? { "content-type": "application/json" } : {}) });
      stream.end(text);
    };
    const path = /^\/3\/device\/(.+)$/.exec(String(headers[":path"]));
    if (headers[":method"] !== "POST" || !path) return reply(405, { reason: "MethodNotAllowed" });
    const jwt = /^bearer (\S+)$/.exec(String(headers.authorization ?? ""))?.[1];
    if (!jwt) return reply(403, { reason: "MissingProviderToken" });
    const verified = verifyJwt(jwt, "ES256", options.key.publicKey);
    if (typeof verified === "string" || verified.header.kid !== options.key.keyId || verified.claims.iss !== options.key.teamId) {
      return reply(403, { reason: "InvalidProviderToken" });
    }
    const iat = verified.claims.iat;
    if (typeof iat !== "number" || iat < Date.now() / 1000 - 3600) return reply(403, { reason: "ExpiredProviderToken" });
    providerTokens.push(jwt);
    if (headers["apns-topic"] !== options.topic) return reply(400, { reason: headers["apns-topic"] ? "DeviceTokenNotForTopic" : "MissingTopic" });
    if (headers["apns-push-type"] !== "alert") return reply(400, { reason: "InvalidPushType" });
    const token = path[1]!;
    if (!/^[0-9a-f]{64,200}$/.test(token)) return reply(400, { reason: "BadDeviceToken" });
    let payload: { aps?: { alert?: { title?: string; body?: string } }; notification_id?: string; data?: Record<string, string> };
    try {
      payload = JSON.parse(raw) as typeof payload;
    } catch {
      return reply(400, { reason: "PayloadEmpty" });
    }
    if (Buffer.byteLength(raw) > 4096) return reply(413, { reason: "PayloadTooLarge" });
    const scripted = script.next(token);
    const status = scripted?.status ?? 200;
    received.push({
      provider: "apns",
      notificationId: payload.notification_id ?? "",
      target: token,
      title: payload.aps?.alert?.title ?? "",
      body: payload.aps?.alert?.body ?? "",
      data: payload.data ?? {},
      headers: headers as Received["headers"],
      payload,
      status,
    });
    if (scripted) return reply(scripted.status, scripted.body, scripted.headers);
    reply(200);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    providerTokens,
    sessions: () => sessions,
    script,
    goaway() {
      for (const s of open) s.goaway(http2.constants.NGHTTP2_NO_ERROR);
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
