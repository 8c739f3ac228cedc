/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291).
 *
 * The `web-push` library does the cryptography (encryption, VAPID signing); its own sender is not
 * used because it always speaks https through a fresh request per call, with no socket bound, and
 * signs a new VAPID JWT per message. Here the JWT is signed once per push-service origin and reused
 * for about 11 of its 12 hours, and requests go through the shared keep-alive client.
 */
import type { LookupFunction } from "node:net";
import webpush from "web-push";
import type { Notification, StoredDevice } from "../ports.js";
import { ttlSeconds, webPushTopic } from "./collapse.js";
import { createHttpClient, type HttpClient } from "./http-client.js";
import type { PushProvider, SendOutcome } from "./provider.js";
import { parseRetryAfter } from "./retry-after.js";
import { refuseTarget, type CheckTarget } from "./target.js";

export interface VapidKeys {
  /** Uncompressed P-256 public key, base64url (65 bytes): what browsers get as applicationServerKey. */
  readonly publicKey: string;
  /** The private scalar, base64url (32 bytes). */
  readonly privateKey: string;
  /** mailto: or https: contact for the push service operator. */
  readonly subject: string;
}

export interface WebPushOptions {
  readonly vapid: VapidKeys;
  readonly timeoutMs: number;
  readonly maxSockets: number;
  /** Resolution of the connections (the target guard's: internal addresses refused). */
  readonly lookup?: LookupFunction;
  readonly checkTarget?: CheckTarget;
  readonly now?: () => number;
}

interface Subscription {
  readonly endpoint: string;
  readonly keys: { readonly p256dh: string; readonly auth: string };
}

const JWT_LIFETIME_S = 12 * 3600;
const JWT_REUSE_MS = 11 * 3600 * 1000;
const MAX_CACHED_ORIGINS = 1_000;

export function parseSubscription(token: string): Subscription | undefined {
  try {
    const s = JSON.parse(token) as Partial<Subscription>;
    if (typeof s.endpoint === "string" && typeof s.keys?.p256dh === "string" && typeof s.keys.auth === "string") return s as Subscription;
  } catch {
    // not JSON: refused below like any malformed subscription
  }
  return undefined;
}

export class WebPushProvider implements PushProvider {
  readonly platform = "web-push" as const;
  private readonly http: HttpClient;
  private readonly now: () => number;
  private readonly jwts = new Map<string, { authorization: string; reuseUntilMs: number }>();

  constructor(private readonly options: WebPushOptions) {
    this.http = createHttpClient(options);
    this.now = options.now ?? Date.now;
  }

  async send(device: StoredDevice, n: Notification, signal?: AbortSignal): Promise<SendOutcome> {
    const subscription = parseSubscription(device.token);
    if (!subscription) return { kind: "dead-token", reason: "not a Web Push subscription" };
    const target = await refuseTarget(subscription.endpoint, this.options.checkTarget);
    if (!("url" in target)) return target;
    const nowMs = this.now();
    const payload = JSON.stringify({ notification_id: n.id, title: n.title, body: n.body, data: n.data, collapse_key: n.collapseKey });
    // Outside the try below: a VAPID problem is ours, not the device's.
    const authorization = this.authorization(target.url.origin, nowMs);
    let details: ReturnType<typeof webpush.generateRequestDetails>;
    try {
      details = webpush.generateRequestDetails(subscription, payload, {
        // null, not undefined: undefined would fall back to a process-wide webpush.setVapidDetails().
        vapidDetails: null as unknown as undefined,
        headers: { Authorization: authorization },
        TTL: ttlSeconds(n.expireAtMs, nowMs),
        urgency: "high",
        topic: webPushTopic(n.id),
        contentEncoding: "aes128gcm",
      });
    } catch (err) {
      // The subscription's keys do not make a P-256 point or an auth secret: the browser gave junk.
      return { kind: "dead-token", reason: `subscription keys unusable: ${(err as Error).message}` };
    }
    const headers: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(details.headers)) if (k.toLowerCase() !== "content-length") headers[k] = v as string | number;
    const answer = await this.http.post(target.url, headers, details.body ?? Buffer.alloc(0), signal);
    if (answer.kind === "network") return { kind: "retry", reason: `web push: ${answer.reason}` };
    return classifyWebPush(answer.status, answer.headers["retry-after"], answer.body, this.now());
  }

  /** One VAPID JWT per push-service origin (the JWT's `aud`), reused for most of its life. */
  private authorization(origin: string, nowMs: number): string {
    const cached = this.jwts.get(origin);
    if (cached && nowMs < cached.reuseUntilMs) return cached.authorization;
    const { vapid } = this.options;
    const exp = Math.floor(nowMs / 1000) + JWT_LIFETIME_S;
    const { Authorization } = webpush.getVapidHeaders(origin, vapid.subject, vapid.publicKey, vapid.privateKey, "aes128gcm", exp) as { Authorization: string };
    // Origins are the few push services checkTarget lets through; the bound is against a bad check.
    if (this.jwts.size >= MAX_CACHED_ORIGINS) this.jwts.clear();
    this.jwts.set(origin, { authorization: Authorization, reuseUntilMs: nowMs + JWT_REUSE_MS });
    return Authorization;
  }

  async close(): Promise<void> {
    this.http.close();
  }
}

export function classifyWebPush(status: number, retryAfter: string | string[] | undefined, body: string, nowMs: number): SendOutcome {
  const said = body.trim().slice(0, 200);
  if (status === 200 || status === 201 || status === 202) return { kind: "sent" };
  if (status === 404 || status === 410) return { kind: "dead-token", reason: `web push ${status}: subscription gone` };
  if (status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(retryAfter, nowMs);
    return { kind: "retry", reason: `web push ${status}${said ? `: ${said}` : ""}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  return { kind: "failed", reason: `web push ${status}${said ? `: ${said}` : ""}` };
}
