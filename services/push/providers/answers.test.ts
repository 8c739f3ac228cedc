/**
 * Every documented provider answer -> outcome, each answer given by the local server speaking that
 * provider's API (testkit/push-endpoints.ts), so status, error body format and Retry-After travel
 * over real HTTP. Retry-After is checked in both forms: delay-seconds and HTTP-date.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apnsError, fcmError, startPushEndpoints, type PushEndpoints, type ScriptedAnswer } from "../../../testkit/push-endpoints.js";
import { apnsDeviceToken, testDevice, testNotification } from "../../../testkit/push-endpoints/fixtures.js";
import type { Platform } from "../ports.js";
import { ApnsProvider } from "./apns.js";
import { FcmProvider } from "./fcm.js";
import type { PushProvider, SendOutcome } from "./provider.js";
import { WebhookProvider } from "./webhook.js";
import { WebPushProvider } from "./webpush.js";

// A fixed clock on a whole second: an HTTP-date Retry-After then converts to an exact delay.
const NOW = Math.floor(Date.now() / 1000) * 1000;
const now = (): number => NOW;
const httpDate = (inMs: number): string => new Date(NOW + inMs).toUTCString();

interface Row {
  readonly answer: ScriptedAnswer;
  readonly kind: SendOutcome["kind"];
  readonly retryAfterMs?: number;
  readonly label: string;
}

const withHeaders = (a: { status: number; body: unknown }, headers: Record<string, string>): ScriptedAnswer => ({ ...a, headers });
const fcmInvalidToken = fcmError(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT");
const fcmTokenFieldViolation: ScriptedAnswer = {
  status: 400,
  body: {
    error: {
      code: 400,
      message: "Request contains an invalid argument.",
      status: "INVALID_ARGUMENT",
      details: [
        { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "INVALID_ARGUMENT" },
        { "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: "message.token", description: "Invalid registration token" }] },
      ],
    },
  },
};

const TABLE: Record<Platform, Row[]> = {
  "web-push": [
    { label: "201 Created", answer: { status: 201 }, kind: "sent" },
    { label: "200", answer: { status: 200 }, kind: "sent" },
    { label: "202 Accepted", answer: { status: 202 }, kind: "sent" },
    { label: "404", answer: { status: 404 }, kind: "dead-token" },
    { label: "410 Gone", answer: { status: 410 }, kind: "dead-token" },
    { label: "429, Retry-After seconds", answer: { status: 429, headers: { "retry-after": "30" } }, kind: "retry", retryAfterMs: 30_000 },
    { label: "500", answer: { status: 500 }, kind: "retry" },
    { label: "503, Retry-After HTTP-date", answer: { status: 503, headers: { "retry-after": httpDate(120_000) } }, kind: "retry", retryAfterMs: 120_000 },
    { label: "400", answer: { status: 400, body: "bad request" }, kind: "failed" },
    { label: "401", answer: { status: 401 }, kind: "failed" },
    { label: "403", answer: { status: 403 }, kind: "failed" },
    { label: "413", answer: { status: 413 }, kind: "failed" },
  ],
  fcm: [
    { label: "200", answer: { status: 200, body: { name: "projects/p/messages/1" } }, kind: "sent" },
    { label: "404 UNREGISTERED", answer: fcmError(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), kind: "dead-token" },
    { label: "400 INVALID_ARGUMENT, invalid registration token", answer: fcmInvalidToken, kind: "dead-token" },
    { label: "400 INVALID_ARGUMENT, message.token field violation", answer: fcmTokenFieldViolation, kind: "dead-token" },
    {
      label: "400 INVALID_ARGUMENT about the payload",
      answer: fcmError(400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value'", "INVALID_ARGUMENT"),
      kind: "failed",
    },
    { label: "403 SENDER_ID_MISMATCH", answer: fcmError(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"), kind: "dead-token" },
    {
      label: "503 UNAVAILABLE, Retry-After seconds",
      answer: withHeaders(fcmError(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"), { "retry-after": "10" }),
      kind: "retry",
      retryAfterMs: 10_000,
    },
    { label: "500 INTERNAL", answer: fcmError(500, "INTERNAL", "Internal error encountered.", "INTERNAL"), kind: "retry" },
    {
      label: "429 QUOTA_EXCEEDED, Retry-After HTTP-date",
      answer: withHeaders(fcmError(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric", "QUOTA_EXCEEDED"), { "retry-after": httpDate(60_000) }),
      kind: "retry",
      retryAfterMs: 60_000,
    },
    { label: "401 THIRD_PARTY_AUTH_ERROR", answer: fcmError(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR"), kind: "failed" },
    { label: "403 PERMISSION_DENIED", answer: fcmError(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied"), kind: "failed" },
  ],
  apns: [
    { label: "200", answer: { status: 200 }, kind: "sent" },
    { label: "410 Unregistered", answer: apnsError(410, "Unregistered"), kind: "dead-token" },
    { label: "400 BadDeviceToken", answer: apnsError(400, "BadDeviceToken"), kind: "dead-token" },
    { label: "400 DeviceTokenNotForTopic", answer: apnsError(400, "DeviceTokenNotForTopic"), kind: "dead-token" },
    { label: "403 ExpiredProviderToken", answer: apnsError(403, "ExpiredProviderToken"), kind: "retry" },
    {
      label: "429 TooManyRequests, Retry-After seconds",
      answer: { ...apnsError(429, "TooManyRequests"), headers: { "retry-after": "5" } },
      kind: "retry",
      retryAfterMs: 5_000,
    },
    { label: "500 InternalServerError", answer: apnsError(500, "InternalServerError"), kind: "retry" },
    {
      label: "503 ServiceUnavailable, Retry-After HTTP-date",
      answer: { ...apnsError(503, "ServiceUnavailable"), headers: { "retry-after": httpDate(90_000) } },
      kind: "retry",
      retryAfterMs: 90_000,
    },
    { label: "413 PayloadTooLarge", answer: apnsError(413, "PayloadTooLarge"), kind: "failed" },
    { label: "400 BadCollapseId", answer: apnsError(400, "BadCollapseId"), kind: "failed" },
    { label: "403 InvalidProviderToken", answer: apnsError(403, "InvalidProviderToken"), kind: "failed" },
  ],
  webhook: [
    { label: "200", answer: { status: 200 }, kind: "sent" },
    { label: "202", answer: { status: 202 }, kind: "sent" },
    { label: "204", answer: { status: 204 }, kind: "sent" },
    { label: "410 Gone", answer: { status: 410 }, kind: "dead-token" },
    { label: "429, Retry-After seconds", answer: { status: 429, headers: { "retry-after": "7" } }, kind: "retry", retryAfterMs: 7_000 },
    { label: "500", answer: { status: 500 }, kind: "retry" },
    { label: "503, Retry-After HTTP-date", answer: { status: 503, headers: { "retry-after": httpDate(45_000) } }, kind: "retry", retryAfterMs: 45_000 },
    { label: "400", answer: { status: 400 }, kind: "failed" },
    { label: "401", answer: { status: 401 }, kind: "failed" },
    { label: "404", answer: { status: 404 }, kind: "failed" },
    { label: "301 (redirects are not followed)", answer: { status: 301, headers: { location: "http://169.254.169.254/" } }, kind: "failed" },
  ],
};

let endpoints: PushEndpoints;
let providers: Record<Platform, PushProvider>;

beforeAll(async () => {
  endpoints = await startPushEndpoints();
  const { config } = endpoints;
  const { credentials: c } = endpoints;
  const http = { timeoutMs: 5_000, maxSockets: 4, now };
  providers = {
    "web-push": new WebPushProvider({ ...http, vapid: c.vapid }),
    fcm: new FcmProvider({ ...http, serviceAccount: c.serviceAccount.json, endpoint: config.fcmEndpoint }),
    apns: new ApnsProvider({ ...http, key: c.apnsKey.p8, keyId: c.apnsKey.keyId, teamId: c.apnsKey.teamId, topic: config.apns!.topic, endpoint: config.apnsEndpoint }),
    webhook: new WebhookProvider({ ...http, secret: c.webhookKey }),
  };
});

afterAll(async () => {
  await Promise.all(Object.values(providers ?? {}).map((p) => p.close?.()));
  await endpoints?.close();
});

/** A fresh target on the platform's local server, its answers scripted. */
function scriptedTarget(platform: Platform, answer: ScriptedAnswer): { token: string; received: () => number } {
  switch (platform) {
    case "web-push": {
      const s = endpoints.webPush.subscribe();
      endpoints.webPush.script.answer(s.json.endpoint, answer);
      return { token: JSON.stringify(s.json), received: () => endpoints.webPush.received.filter((r) => r.target === s.json.endpoint).length };
    }
    case "fcm": {
      const token = `fcm-${Math.random().toString(36).slice(2)}`;
      endpoints.fcm.script.answer(token, answer);
      return { token, received: () => endpoints.fcm.received.filter((r) => r.target === token).length };
    }
    case "apns": {
      const token = apnsDeviceToken();
      endpoints.apns.script.answer(token, answer);
      return { token, received: () => endpoints.apns.received.filter((r) => r.target === token).length };
    }
    case "webhook": {
      const token = endpoints.webhook.hook(Math.random().toString(36).slice(2));
      endpoints.webhook.script.answer(token, answer);
      return { token, received: () => endpoints.webhook.received.filter((r) => r.target === token).length };
    }
  }
}

describe.each(Object.keys(TABLE) as Platform[])("%s answers", (platform) => {
  it.each(TABLE[platform])("$label -> $kind", async (row) => {
    const target = scriptedTarget(platform, row.answer);
    const outcome = await providers[platform].send(testDevice(platform, target.token), testNotification(NOW));
    expect(target.received(), "the local server received the request and gave the scripted answer").toBe(1);
    expect(outcome.kind).toBe(row.kind);
    if (outcome.kind === "retry") expect(outcome.retryAfterMs).toBe(row.retryAfterMs);
    if (outcome.kind !== "sent") expect(outcome.reason).toMatch(String(row.answer.status));
  });
});
