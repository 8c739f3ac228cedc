/**
 * APNs with token-based authentication over HTTP/2.
 * https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
 *
 * One HTTP/2 session per origin carries every request (APNs wants long-lived connections); it is
 * reopened after GOAWAY, an error or a close. The provider token (ES256 JWT) is reused for 50
 * minutes: APNs rejects tokens older than an hour and answers TooManyProviderTokenUpdates when a
 * new one comes more often than every 20 minutes.
 */
import http2 from "node:http2";
import { createPrivateKey, type KeyObject } from "node:crypto";
import type { Notification, StoredDevice } from "../ports.js";
import { apnsCollapseId, apnsId } from "./collapse.js";
import { signJwt } from "./jwt.js";
import type { PushProvider, SendOutcome } from "./provider.js";
import { parseRetryAfter } from "./retry-after.js";

export interface ApnsOptions {
  /** The .p8 key's PEM text (PKCS#8 P-256). */
  readonly key: string;
  readonly keyId: string;
  readonly teamId: string;
  /** The app's bundle id (apns-topic). */
  readonly topic: string;
  /** https://api.push.apple.com (production), https://api.sandbox.push.apple.com, or http://host:port (h2c, tests). */
  readonly endpoint: string;
  readonly timeoutMs: number;
  readonly now?: () => number;
}

const TOKEN_REUSE_MS = 50 * 60 * 1000;

export class ApnsProvider implements PushProvider {
  readonly platform = "apns" as const;
  private readonly key: KeyObject;
  private readonly now: () => number;
  private session: http2.ClientHttp2Session | undefined;
  private providerToken: { jwt: string; reuseUntilMs: number } | undefined;
  private closed = false;

  constructor(private readonly options: ApnsOptions) {
    this.key = createPrivateKey(options.key);
    this.now = options.now ?? Date.now;
  }

  async send(device: StoredDevice, n: Notification, signal?: AbortSignal): Promise<SendOutcome> {
    if (!/^[0-9a-fA-F]{16,200}$/.test(device.token)) return { kind: "dead-token", reason: "not an APNs device token (hex)" };
    const jwt = this.bearer();
    const payload = JSON.stringify({
      aps: { alert: { title: n.title, body: n.body }, sound: "default", ...(n.collapseKey ? { "thread-id": n.collapseKey } : {}) },
      notification_id: n.id,
      data: n.data,
    });
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": `/3/device/${device.token.toLowerCase()}`,
      authorization: `bearer ${jwt}`,
      "apns-topic": this.options.topic,
      "apns-push-type": "alert",
      "apns-priority": "10",
      "apns-expiration": String(Math.max(0, Math.floor(n.expireAtMs / 1000))),
      "apns-collapse-id": apnsCollapseId(n.id),
      "apns-id": apnsId(n.id),
      "content-type": "application/json",
    };
    const answer = await this.request(headers, payload, signal);
    if (answer.kind === "network") return { kind: "retry", reason: `apns: ${answer.reason}` };
    // The token is stale for APNs (clock skew, a revoked key id): the next send signs a new one.
    if (answer.status === 403 && apnsReason(answer.body) === "ExpiredProviderToken" && this.providerToken?.jwt === jwt) this.providerToken = undefined;
    return classifyApns(answer.status, answer.body, answer.retryAfter, this.now());
  }

  private bearer(): string {
    const nowMs = this.now();
    if (this.providerToken && nowMs < this.providerToken.reuseUntilMs) return this.providerToken.jwt;
    const jwt = signJwt("ES256", this.key, { iss: this.options.teamId, iat: Math.floor(nowMs / 1000) }, { kid: this.options.keyId });
    this.providerToken = { jwt, reuseUntilMs: nowMs + TOKEN_REUSE_MS };
    return jwt;
  }

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = http2.connect(this.options.endpoint);
    const forget = (): void => {
      if (this.session === session) this.session = undefined;
    };
    // After GOAWAY the session takes no new streams: later sends open a new one while this one finishes.
    session.on("goaway", forget);
    session.on("close", forget);
    session.on("error", forget);
    // Every in-flight request listens for the session failing (bounded by the worker's concurrency).
    session.setMaxListeners(0);
    session.unref();
    this.session = session;
    return session;
  }

  private request(
    headers: http2.OutgoingHttpHeaders,
    payload: string,
    signal?: AbortSignal,
  ): Promise<{ kind: "answer"; status: number; body: string; retryAfter: string | undefined } | { kind: "network"; reason: string }> {
    if (this.closed) return Promise.resolve({ kind: "network", reason: "provider closed" });
    return new Promise((resolve) => {
      let settled = false;
      let stream: http2.ClientHttp2Stream | undefined;
      let session: http2.ClientHttp2Session | undefined;
      const onSessionError = (err: Error): void => fail(err.message);
      const settle = (v: Parameters<typeof resolve>[0]): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        session?.off("error", onSessionError);
        signal?.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const fail = (reason: string): void => {
        settle({ kind: "network", reason });
        if (stream && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
      };
      const timer = setTimeout(() => {
        fail(`no answer within ${this.options.timeoutMs} ms`);
        // A silent session (a half-open connection, a peer that never sent SETTINGS) would make
        // every later send wait out its timeout too: later sends get a new one, this one closes
        // once its other streams end (each bounded by its own timeout).
        if (session && this.session === session) {
          this.session = undefined;
          if (session.connecting) session.destroy();
          else session.close();
        }
      }, this.options.timeoutMs);
      const onAbort = (): void => fail("aborted");
      if (signal?.aborted) return fail("aborted");
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        session = this.connect();
        session.on("error", onSessionError);
        stream = session.request(headers);
      } catch (err) {
        return fail((err as Error).message);
      }
      let status = 0;
      let retryAfter: string | undefined;
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        const ra = h["retry-after"];
        retryAfter = Array.isArray(ra) ? ra[0] : ra;
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => (status ? settle({ kind: "answer", status, body: Buffer.concat(chunks).toString("utf8"), retryAfter }) : fail("stream ended without an answer")));
      stream.on("error", (err) => fail(err.message));
      stream.on("close", () => fail(`stream closed (code ${stream?.rstCode ?? "?"})`));
      stream.end(payload);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const s = this.session;
    this.session = undefined;
    if (!s || s.destroyed) return;
    // close() lets open streams finish but never completes on a session still connecting to a
    // peer that does not answer: bounded by the request timeout, then destroyed.
    await new Promise<void>((r) => {
      const timer = setTimeout(() => {
        s.destroy();
        r();
      }, this.options.timeoutMs);
      s.close(() => {
        clearTimeout(timer);
        r();
      });
    });
  }
}

/** The `reason` of an APNs error body, "" when there is none. */
export function apnsReason(body: string): string {
  try {
    return String((JSON.parse(body) as { reason?: unknown }).reason ?? "");
  } catch {
    return "";
  }
}

export function classifyApns(status: number, body: string, retryAfter: string | undefined, nowMs: number): SendOutcome {
  if (status === 200) return { kind: "sent" };
  const reason = apnsReason(body);
  const said = `apns ${status}${reason ? ` ${reason}` : ""}`;
  if (status === 410 || reason === "Unregistered" || reason === "BadDeviceToken" || reason === "DeviceTokenNotForTopic") return { kind: "dead-token", reason: said };
  if (status === 403 && reason === "ExpiredProviderToken") return { kind: "retry", reason: said };
  if (status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(retryAfter, nowMs);
    return { kind: "retry", reason: said, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  return { kind: "failed", reason: said };
}
