/**
 * A local Web Push service (RFC 8030): POST /push/<id> with VAPID (RFC 8292) authorization and
 * an aes128gcm body (RFC 8291). It verifies the VAPID JWT against `k` and DECRYPTS the body with
 * the subscription's private key, written here from the RFCs independently of the sender's
 * library, so a passing test proves the encryption interoperates.
 */
import { createDecipheriv, hkdfSync } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { makeBrowserSubscription, p256PublicKey, type BrowserSubscription } from "./credentials.js";
import { verifyJwt } from "./jws.js";
import { encodeBody, readBody, Script, type Received } from "./script.js";

export interface WebPushServer {
  readonly url: string;
  readonly received: Received[];
  /** Every VAPID JWT seen, in order (the sender should reuse one per origin). */
  readonly vapidTokens: string[];
  readonly script: Script;
  /** A browser subscription on this push service; unknown subscriptions answer 410. */
  subscribe(): BrowserSubscription;
  close(): Promise<void>;
}

export async function startWebPushServer(options: { vapidPublicKey: string }): Promise<WebPushServer> {
  const subscriptions = new Map<string, BrowserSubscription>();
  const received: Received[] = [];
  const vapidTokens: string[] = [];
  const script = new Script();
  let origin = "";

  const server = http.createServer(async (req, res) => {
    const raw = await readBody(req);
    const endpoint = `${origin}${req.url ?? ""}`;
    const reply = (status: number, body?: unknown, headers: Record<string, string> = {}): void => {
      const { text, json } = encodeBody(body);
      res.writeHead(status, { ...headers, ...(json ? { "content-type": "application/json" } : {}) }).end(text);
    };
    if (req.method !== "POST" || !req.url?.startsWith("/push/")) return reply(404);
    const auth = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(req.headers.authorization ?? "");
    if (!auth) return reply(401, "missing or malformed VAPID authorization");
    const [, jwt, k] = auth as unknown as [string, string, string];
    // RFC 8292 section 4: the key in `k` must be the one the subscription was created with.
    if (k !== options.vapidPublicKey) return reply(403, "VAPID key does not match the subscription's applicationServerKey");
    const verified = verifyJwt(jwt, "ES256", p256PublicKey(Buffer.from(k, "base64url")));
    if (typeof verified === "string") return reply(401, `VAPID JWT: ${verified}`);
    const nowS = Date.now() / 1000;
    const { aud, exp, sub } = verified.claims;
    if (aud !== origin) return reply(401, `VAPID aud ${String(aud)} is not ${origin}`);
    if (typeof exp !== "number" || exp <= nowS || exp > nowS + 24 * 3600) return reply(401, "VAPID exp missing, past or more than 24 h ahead");
    if (typeof sub !== "string" || !/^(mailto:|https:)/.test(sub)) return reply(401, "VAPID sub is not mailto: or https:");
    vapidTokens.push(jwt);
    if (req.headers["content-encoding"] !== "aes128gcm") return reply(400, "Content-Encoding must be aes128gcm");
    if (!/^\d+$/.test(String(req.headers.ttl ?? ""))) return reply(400, "TTL header missing");
    const subscription = subscriptions.get(endpoint);
    if (!subscription) return reply(410, "subscription expired or unsubscribed");
    let payload: { notification_id?: string; title?: string; body?: string; data?: Record<string, string> };
    try {
      payload = JSON.parse(decryptAes128gcm(raw, subscription).toString("utf8")) as typeof payload;
    } catch (err) {
      return reply(400, `cannot decrypt: ${(err as Error).message}`);
    }
    const scripted = script.next(endpoint);
    const status = scripted?.status ?? 201;
    received.push({
      provider: "web-push",
      notificationId: payload.notification_id ?? "",
      target: endpoint,
      title: payload.title ?? "",
      body: payload.body ?? "",
      data: payload.data ?? {},
      headers: req.headers,
      payload,
      status,
    });
    if (scripted) return reply(scripted.status, scripted.body, scripted.headers);
    reply(201, undefined, { location: `${origin}/message/${received.length}` });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: origin,
    received,
    vapidTokens,
    script,
    subscribe() {
      const s = makeBrowserSubscription(origin);
      subscriptions.set(s.json.endpoint, s);
      return s;
    },
    close: () => closeHttp(server),
  };
}

export function closeHttp(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

/** RFC 8291 section 3.4 and RFC 8188: one record, header salt(16) rs(4) idlen(1) keyid(as_public). */
export function decryptAes128gcm(message: Buffer, subscription: BrowserSubscription): Buffer {
  if (message.length < 21 + 65 + 17) throw new Error("body shorter than an aes128gcm header and one record");
  const salt = message.subarray(0, 16);
  const rs = message.readUInt32BE(16);
  const idlen = message[20]!;
  if (idlen !== 65) throw new Error(`keyid is ${idlen} bytes, expected the 65-byte sender public key`);
  const asPublic = message.subarray(21, 21 + idlen);
  const record = message.subarray(21 + idlen);
  if (record.length > rs) throw new Error("more than one record");
  const uaPublic = subscription.ecdh.getPublicKey();
  const ecdhSecret = subscription.ecdh.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, asPublic]);
  const ikm = Buffer.from(hkdfSync("sha256", ecdhSecret, subscription.authSecret, keyInfo, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (padded[end] !== 2) throw new Error("last record's padding delimiter is not 0x02");
  return padded.subarray(0, end);
}
