/**
 * A signed JSON POST to a user's webhook URL, per Standard Webhooks
 * (https://www.standardwebhooks.com): webhook-id is the notification id, so a receiver dedupes
 * resends with the same key we do, and the signature covers id, timestamp and body.
 */
import type { LookupFunction } from "node:net";
import { createHmac } from "node:crypto";
import type { Notification, StoredDevice } from "../ports.js";
import { createHttpClient, type HttpClient } from "./http-client.js";
import type { PushProvider, SendOutcome } from "./provider.js";
import { parseRetryAfter } from "./retry-after.js";
import { refuseTarget, type CheckTarget } from "./target.js";

export interface WebhookOptions {
  /** The signing key's bytes (the base64 part of a `whsec_...` secret, decoded). */
  readonly secret: Buffer;
  readonly timeoutMs: number;
  readonly maxSockets: number;
  /** Resolution of the connections (the target guard's: internal addresses refused). */
  readonly lookup?: LookupFunction;
  readonly checkTarget?: CheckTarget;
  readonly now?: () => number;
}

export function webhookSignature(secret: Buffer, id: string, timestamp: number, body: string): string {
  return `v1,${createHmac("sha256", secret).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

export class WebhookProvider implements PushProvider {
  readonly platform = "webhook" as const;
  private readonly http: HttpClient;
  private readonly now: () => number;

  constructor(private readonly options: WebhookOptions) {
    this.http = createHttpClient(options);
    this.now = options.now ?? Date.now;
  }

  async send(device: StoredDevice, n: Notification, signal?: AbortSignal): Promise<SendOutcome> {
    const target = await refuseTarget(device.token, this.options.checkTarget);
    if (!("url" in target)) return target;
    const body = JSON.stringify({
      notification_id: n.id,
      title: n.title,
      body: n.body,
      data: n.data,
      collapse_key: n.collapseKey,
      expire_time: new Date(n.expireAtMs).toISOString(),
    });
    const timestamp = Math.floor(this.now() / 1000);
    const answer = await this.http.post(
      target.url,
      {
        "content-type": "application/json",
        "webhook-id": n.id,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": webhookSignature(this.options.secret, n.id, timestamp, body),
      },
      body,
      signal,
    );
    if (answer.kind === "network") return { kind: "retry", reason: `webhook: ${answer.reason}` };
    return classifyWebhook(answer.status, answer.headers["retry-after"], this.now());
  }

  async close(): Promise<void> {
    this.http.close();
  }
}

export function classifyWebhook(status: number, retryAfter: string | string[] | undefined, nowMs: number): SendOutcome {
  if (status >= 200 && status < 300) return { kind: "sent" };
  if (status === 410) return { kind: "dead-token", reason: "webhook 410: the receiver is gone" };
  if (status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(retryAfter, nowMs);
    return { kind: "retry", reason: `webhook ${status}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  // Redirects are not followed: the checked target is the only address we call.
  return { kind: "failed", reason: `webhook ${status}` };
}
