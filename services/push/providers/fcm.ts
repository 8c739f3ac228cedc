/**
 * FCM HTTP v1 (projects.messages.send) with service-account OAuth2 tokens. Errors are read from
 * the google.rpc.Status body: the FcmError detail's errorCode when present, else the status.
 * https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
 */
import type { Notification, StoredDevice } from "../ports.js";
import { apnsCollapseId, ttlSeconds, webPushTopic } from "./collapse.js";
import { GoogleAccessTokens, TokenError, type ServiceAccount } from "./google-token.js";
import { createHttpClient, type HttpAnswer, type HttpClient } from "./http-client.js";
import type { PushProvider, SendOutcome } from "./provider.js";
import { parseRetryAfter } from "./retry-after.js";

export interface FcmOptions {
  readonly serviceAccount: ServiceAccount;
  /** https://fcm.googleapis.com in production. */
  readonly endpoint: string;
  readonly timeoutMs: number;
  readonly maxSockets: number;
  readonly now?: () => number;
}

const FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

export class FcmProvider implements PushProvider {
  readonly platform = "fcm" as const;
  private readonly http: HttpClient;
  private readonly tokens: GoogleAccessTokens;
  private readonly url: URL;
  private readonly now: () => number;

  constructor(options: FcmOptions) {
    this.http = createHttpClient(options);
    this.now = options.now ?? Date.now;
    this.tokens = new GoogleAccessTokens(options.serviceAccount, this.http, this.now);
    this.url = new URL(`/v1/projects/${encodeURIComponent(options.serviceAccount.project_id)}/messages:send`, options.endpoint);
  }

  async send(device: StoredDevice, n: Notification, signal?: AbortSignal): Promise<SendOutcome> {
    const body = JSON.stringify({ message: fcmMessage(device.token, n, this.now()) });
    let stale: string | undefined;
    // A 401 UNAUTHENTICATED means our access token was revoked or expired early: one fresh token, once.
    for (let attempt = 0; attempt < 2; attempt++) {
      let token: string;
      try {
        token = await this.tokens.token(stale);
      } catch (err) {
        if (err instanceof TokenError) return err.retryable ? { kind: "retry", reason: `fcm: ${err.message}` } : { kind: "failed", reason: `fcm: ${err.message}` };
        throw err;
      }
      const answer = await this.http.post(this.url, { authorization: `Bearer ${token}`, "content-type": "application/json; charset=utf-8" }, body, signal);
      if (answer.kind === "network") return { kind: "retry", reason: `fcm: ${answer.reason}` };
      const outcome = classifyFcm(answer, this.now());
      if (outcome !== "unauthenticated") return outcome;
      stale = token;
    }
    return { kind: "failed", reason: "fcm 401: access token refused twice" };
  }

  async close(): Promise<void> {
    this.http.close();
  }
}

export function fcmMessage(token: string, n: Notification, nowMs: number): Record<string, unknown> {
  const collapse = n.collapseKey || n.id;
  const ttl = ttlSeconds(n.expireAtMs, nowMs);
  return {
    token,
    notification: { title: n.title, body: n.body },
    data: { ...n.data, notification_id: n.id },
    android: { collapse_key: collapse, ttl: `${ttl}s`, priority: "high" },
    apns: { headers: { "apns-collapse-id": apnsCollapseId(n.id), "apns-expiration": String(Math.floor(n.expireAtMs / 1000)) } },
    webpush: { headers: { Topic: webPushTopic(n.id), TTL: String(ttl), Urgency: "high" } },
  };
}

interface RpcStatus {
  readonly code?: number;
  readonly message?: string;
  readonly status?: string;
  readonly details?: ReadonlyArray<{ "@type"?: string; errorCode?: string; fieldViolations?: ReadonlyArray<{ field?: string }> }>;
}

function rpcStatus(body: string): RpcStatus {
  try {
    return ((JSON.parse(body) as { error?: RpcStatus }).error ?? {}) as RpcStatus;
  } catch {
    return {};
  }
}

/** "unauthenticated": our own access token was refused (refresh and resend once). */
export function classifyFcm(answer: HttpAnswer, nowMs: number): SendOutcome | "unauthenticated" {
  if (answer.status === 200) return { kind: "sent" };
  const error = rpcStatus(answer.body);
  const details = error.details ?? [];
  const fcmCode = details.find((d) => d["@type"] === FCM_ERROR_TYPE)?.errorCode;
  const code = fcmCode ?? error.status ?? `HTTP_${answer.status}`;
  const reason = `fcm ${answer.status} ${code}${error.message ? `: ${error.message.slice(0, 200)}` : ""}`;
  const retry = (): SendOutcome => {
    const retryAfterMs = parseRetryAfter(answer.headers["retry-after"], nowMs);
    return { kind: "retry", reason, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  };
  switch (code) {
    case "UNREGISTERED":
    case "SENDER_ID_MISMATCH":
      return { kind: "dead-token", reason };
    case "INVALID_ARGUMENT": {
      const aboutToken =
        /registration token/i.test(error.message ?? "") || details.some((d) => d.fieldViolations?.some((f) => f.field === "message.token"));
      return { kind: aboutToken ? "dead-token" : "failed", reason };
    }
    case "UNAVAILABLE":
    case "INTERNAL":
    case "QUOTA_EXCEEDED":
    case "RESOURCE_EXHAUSTED":
      return retry();
    case "THIRD_PARTY_AUTH_ERROR":
    case "PERMISSION_DENIED":
      return { kind: "failed", reason };
    case "UNAUTHENTICATED":
      return "unauthenticated";
  }
  if (answer.status === 401) return "unauthenticated";
  if (answer.status === 429 || answer.status >= 500) return retry();
  return { kind: "failed", reason };
}
