/**
 * A local Google OAuth2 token endpoint and FCM HTTP v1 messages:send on one port.
 * Token endpoint: the JWT bearer grant (RFC 7523), the assertion verified (RS256) against the
 * trusted service account's public key, `aud` = this token_uri, the FCM scope; errors in the
 * OAuth2 form ({"error":"invalid_grant"}). messages:send: the Bearer token must be one this
 * server issued and not expired or revoked; errors as google.rpc.Status with an FcmError detail.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { makeServiceAccount, type TestServiceAccount } from "./credentials.js";
import { verifyJwt } from "./jws.js";
import { encodeBody, readBody, Script, type Received } from "./script.js";
import { closeHttp } from "./webpush-server.js";

export interface FcmServer {
  readonly url: string;
  readonly tokenUri: string;
  readonly received: Received[];
  /** Access tokens issued, in order. */
  readonly issuedTokens: string[];
  /** Scripted answers per registration token for messages:send, and under "token" for the token endpoint. */
  readonly script: Script;
  /** A fresh service account whose token_uri is this server, trusted by it. */
  newServiceAccount(projectId?: string): TestServiceAccount;
  /** expires_in of the tokens issued from now on (default 3600 s). */
  setExpiresIn(seconds: number): void;
  /** Every token issued so far is refused from now on (401 UNAUTHENTICATED). */
  revokeTokens(): void;
  close(): Promise<void>;
}

/** An FCM v1 error body: google.rpc.Status with the FcmError detail when `errorCode` is given. */
export function fcmError(httpStatus: number, status: string, message: string, errorCode?: string): { status: number; body: unknown } {
  const details = errorCode ? [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode }] : [];
  return { status: httpStatus, body: { error: { code: httpStatus, message, status, details } } };
}

export async function startFcmServer(): Promise<FcmServer> {
  const accounts = new Map<string, TestServiceAccount>();
  const tokens = new Map<string, { expiresAtMs: number; revoked: boolean }>();
  const received: Received[] = [];
  const issuedTokens: string[] = [];
  const script = new Script();
  let expiresIn = 3600;
  let origin = "";

  const server = http.createServer(async (req, res) => {
    const raw = (await readBody(req)).toString("utf8");
    const reply = (status: number, body?: unknown, headers: Record<string, string> = {}): void => {
      const { text, json } = encodeBody(body);
      res.writeHead(status, { ...headers, ...(json ? { "content-type": "application/json; charset=UTF-8" } : {}) }).end(text);
    };
    if (req.method === "POST" && req.url === "/token") {
      const form = new URLSearchParams(raw);
      if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return reply(400, { error: "unsupported_grant_type" });
      const assertion = form.get("assertion") ?? "";
      const claims = JSON.parse(Buffer.from(assertion.split(".")[1] ?? "", "base64url").toString("utf8") || "{}") as Record<string, unknown>;
      const account = accounts.get(String(claims.iss));
      if (!account) return reply(400, { error: "invalid_grant", error_description: "Invalid JWT Signature." });
      const verified = verifyJwt(assertion, "RS256", account.publicKey);
      if (typeof verified === "string") return reply(400, { error: "invalid_grant", error_description: `Invalid JWT Signature. (${verified})` });
      const nowS = Date.now() / 1000;
      const { aud, scope, iat, exp } = verified.claims;
      if (aud !== `${origin}/token`) return reply(400, { error: "invalid_grant", error_description: "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe" });
      if (typeof iat !== "number" || typeof exp !== "number" || exp - iat > 3600 || exp < nowS || iat > nowS + 300) {
        return reply(400, { error: "invalid_grant", error_description: "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe." });
      }
      if (typeof scope !== "string" || !scope.split(" ").includes("https://www.googleapis.com/auth/firebase.messaging")) {
        return reply(400, { error: "invalid_scope" });
      }
      const scripted = script.next("token");
      if (scripted) return reply(scripted.status, scripted.body, scripted.headers);
      const token = `ya29.${randomBytes(24).toString("base64url")}`;
      tokens.set(token, { expiresAtMs: Date.now() + expiresIn * 1000, revoked: false });
      issuedTokens.push(token);
      return reply(200, { access_token: token, expires_in: expiresIn, token_type: "Bearer" });
    }
    const send = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url ?? "");
    if (req.method !== "POST" || !send) return reply(404, fcmError(404, "NOT_FOUND", "Not found").body);
    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "")?.[1];
    const issued = bearer ? tokens.get(bearer) : undefined;
    if (!issued || issued.revoked || issued.expiresAtMs <= Date.now()) {
      const e = fcmError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.");
      return reply(e.status, e.body, { "www-authenticate": 'Bearer realm="https://accounts.google.com/"' });
    }
    if (![...accounts.values()].some((a) => a.json.project_id === decodeURIComponent(send[1]!))) {
      const e = fcmError(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on resource");
      return reply(e.status, e.body);
    }
    let message: { token?: string; notification?: { title?: string; body?: string }; data?: Record<string, string> };
    try {
      message = (JSON.parse(raw) as { message: typeof message }).message;
    } catch {
      const e = fcmError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
      return reply(e.status, e.body);
    }
    const target = message?.token ?? "";
    if (!target) {
      const e = fcmError(400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT");
      return reply(e.status, e.body);
    }
    const scripted = script.next(target);
    const status = scripted?.status ?? 200;
    received.push({
      provider: "fcm",
      notificationId: message.data?.notification_id ?? "",
      target,
      title: message.notification?.title ?? "",
      body: message.notification?.body ?? "",
      data: message.data ?? {},
      headers: req.headers,
      payload: message,
      status,
    });
    if (scripted) return reply(scripted.status, scripted.body, scripted.headers);
    reply(200, { name: `projects/${send[1]}/messages/${received.length}` });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: origin,
    tokenUri: `${origin}/token`,
    received,
    issuedTokens,
    script,
    newServiceAccount(projectId) {
      const account = makeServiceAccount(`${origin}/token`, projectId);
      accounts.set(account.json.client_email, account);
      return account;
    },
    setExpiresIn(seconds) {
      expiresIn = seconds;
    },
    revokeTokens() {
      for (const t of tokens.values()) t.revoked = true;
    },
    close: () => closeHttp(server),
  };
}
