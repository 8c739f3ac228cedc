/**
 * A local webhook receiver verifying Standard Webhooks signatures: v1 HMAC-SHA256 over
 * "id.timestamp.body" with the shared key, a timestamp within 5 minutes; 401 otherwise.
 * Any path is a receiver; its full URL is the device token.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { encodeBody, readBody, Script, type Received } from "./script.js";
import { closeHttp } from "./webpush-server.js";

export interface WebhookServer {
  readonly url: string;
  readonly received: Received[];
  /** Requests refused for a bad signature or timestamp. */
  readonly refused: string[];
  readonly script: Script;
  /** TCP connections accepted so far (keep-alive reuse shows as few). */
  connections(): number;
  /** A receiver URL (the device token) on this server. */
  hook(name: string): string;
  close(): Promise<void>;
}

/** A Standard Webhooks secret: `whsec_` and the base64 key, and the key bytes. */
export function makeWebhookSecret(): { text: string; key: Buffer } {
  const key = randomBytes(32);
  return { text: `whsec_${key.toString("base64")}`, key };
}

export async function startWebhookServer(options: { key: Buffer; /** Answer each accepted request after this long (a slow receiver). */ delayMs?: number }): Promise<WebhookServer> {
  const received: Received[] = [];
  const refused: string[] = [];
  const script = new Script();
  let origin = "";
  const server = http.createServer(async (req, res) => {
    const raw = (await readBody(req)).toString("utf8");
    const reply = (status: number, body?: unknown, headers: Record<string, string> = {}): void => {
      const { text, json } = encodeBody(body);
      res.writeHead(status, { ...headers, ...(json ? { "content-type": "application/json" } : {}) }).end(text);
    };
    const refuse = (why: string): void => {
      refused.push(why);
      reply(401, why);
    };
    const id = String(req.headers["webhook-id"] ?? "");
    const timestamp = String(req.headers["webhook-timestamp"] ?? "");
    if (!id || !/^\d+$/.test(timestamp)) return refuse("webhook-id or webhook-timestamp missing");
    if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return refuse("timestamp outside the 5 minute tolerance");
    const expected = createHmac("sha256", options.key).update(`${id}.${timestamp}.${raw}`).digest();
    const signatures = String(req.headers["webhook-signature"] ?? "").split(" ");
    const ok = signatures.some((s) => {
      const [version, b64] = s.split(",");
      const given = Buffer.from(b64 ?? "", "base64");
      return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
    });
    if (!ok) return refuse("no valid v1 signature");
    const target = `${origin}${req.url ?? ""}`;
    const payload = JSON.parse(raw) as { notification_id?: string; title?: string; body?: string; data?: Record<string, string> };
    const scripted = script.next(target);
    const status = scripted?.status ?? 204;
    received.push({
      provider: "webhook",
      notificationId: payload.notification_id ?? "",
      target,
      title: payload.title ?? "",
      body: payload.body ?? "",
      data: payload.data ?? {},
      headers: req.headers,
      payload,
      status,
      at: Date.now(),
    });
    if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
    if (scripted) return reply(scripted.status, scripted.body, scripted.headers);
    reply(204);
  });
  let connections = 0;
  server.on("connection", () => connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url: origin, received, refused, script, connections: () => connections, hook: (name) => `${origin}/hooks/${encodeURIComponent(name)}`, close: () => closeHttp(server) };
}
