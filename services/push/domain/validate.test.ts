import { describe, expect, it } from "vitest";
import { isDomainError } from "../../../platform/errors.js";
import type { Platform } from "../ports.js";
import { tokenHint, validateNotification, validateRegistration } from "./validate.js";

const NOW = Date.UTC(2030, 0, 1);
const LIMITS = { defaultTtlMs: 86_400_000, maxTtlMs: 7 * 86_400_000 };
const b64 = (bytes: number[]) => Buffer.from(bytes).toString("base64url");
const P256DH = b64([4, ...Array<number>(64).fill(7)]);
const AUTH = b64(Array<number>(16).fill(9));
const sub = (over: Record<string, unknown> = {}, keys: Record<string, unknown> = {}) =>
  JSON.stringify({ endpoint: "https://fcm.googleapis.com/fcm/send/abc", keys: { p256dh: P256DH, auth: AUTH, ...keys }, ...over });

const reg = (platform: Platform | undefined, token: string, over: { deviceId?: string; displayName?: string } = {}) =>
  validateRegistration({ deviceId: over.deviceId ?? "phone-1", platform, token, displayName: over.displayName ?? "" });

/** The InvalidArgument message of a refused call (fails the test when it was accepted). */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(isDomainError(e) && e.kind).toBe("InvalidArgument");
    return (e as Error).message;
  }
  throw new Error("expected a refusal");
}

describe("validateRegistration", () => {
  it("accepts a well-formed device of every platform; APNs tokens are lower-cased, subscriptions made canonical", () => {
    expect(reg("fcm", "dGhpcyBpcyBub3Q:APA91b-x_y.z").token).toBe("dGhpcyBpcyBub3Q:APA91b-x_y.z");
    expect(reg("apns", "AB".repeat(32)).token).toBe("ab".repeat(32));
    const wp = reg("web-push", JSON.stringify({ keys: { auth: AUTH, p256dh: P256DH }, expirationTime: null, endpoint: "https://fcm.googleapis.com/fcm/send/abc" }));
    expect(wp.token).toBe(sub());
    expect(wp.target?.hostname).toBe("fcm.googleapis.com");
    const hook = reg("webhook", "https://Hooks.Example.com:443/push?x=1");
    expect([hook.token, hook.target?.href]).toEqual(["https://hooks.example.com/push?x=1", "https://hooks.example.com/push?x=1"]);
    expect(reg("fcm", "t", { deviceId: "A-z_0.9:" + "x".repeat(56), displayName: "é".repeat(100) }).deviceId).toHaveLength(64);
  });

  it.each([
    ["device_id", () => reg("fcm", "t", { deviceId: "" }), "device_id: is required"],
    ["device_id", () => reg("fcm", "t", { deviceId: "x".repeat(65) }), "1-64"],
    ["device_id", () => reg("fcm", "t", { deviceId: "has space" }), "device_id"],
    ["platform", () => reg(undefined, "t"), "platform: is required"],
    ["token", () => reg("fcm", ""), "token: is required"],
    ["token", () => reg("fcm", "x".repeat(4_097)), "at most 4096 characters (got 4097)"],
    ["display_name", () => reg("fcm", "t", { displayName: "x".repeat(101) }), "display_name: must be at most 100"],
    ["fcm", () => reg("fcm", "has space"), "FCM registration token"],
    ["fcm", () => reg("fcm", "<script>"), "FCM registration token"],
    ["apns", () => reg("apns", "zz".repeat(32)), "hexadecimal"],
    ["apns", () => reg("apns", "a".repeat(65)), "even number"],
    ["apns", () => reg("apns", "ab".repeat(31)), "64-200"],
    ["apns", () => reg("apns", "ab".repeat(101)), "64-200"],
    ["web push not json", () => reg("web-push", "https://fcm.googleapis.com/x"), "PushSubscription as JSON"],
    ["web push no endpoint", () => reg("web-push", JSON.stringify({ keys: {} })), "token.endpoint: is required"],
    ["web push http", () => reg("web-push", sub({ endpoint: "http://fcm.googleapis.com/x" })), "must use https (got http)"],
    ["web push no keys", () => reg("web-push", JSON.stringify({ endpoint: "https://fcm.googleapis.com/x" })), "token.keys: is required"],
    ["p256dh short", () => reg("web-push", sub({}, { p256dh: b64([4, 1, 2]) })), "token.keys.p256dh: must be base64url of 65 bytes (got 3)"],
    ["p256dh compressed", () => reg("web-push", sub({}, { p256dh: b64([2, ...Array<number>(64).fill(1)]) })), "first byte 0x04"],
    ["p256dh standard base64", () => reg("web-push", sub({}, { p256dh: "ab+/" })), "base64url"],
    ["auth length", () => reg("web-push", sub({}, { auth: b64([1, 2, 3]) })), "token.keys.auth: must be base64url of 16 bytes"],
    ["webhook not a url", () => reg("webhook", "hooks.example.com/x"), "absolute https URL"],
    ["webhook http", () => reg("webhook", "http://hooks.example.com/x"), "must use https"],
    ["webhook credentials", () => reg("webhook", "https://u:p@hooks.example.com/x"), "credentials"],
    ["webhook fragment", () => reg("webhook", "https://hooks.example.com/x#frag"), "fragment"],
  ])("refuses %s, naming the field and the limit", (_, f, message) => {
    expect(refusal(f)).toContain(message);
  });

  it("plain http targets only when private targets are allowed (local provider test servers), never other schemes", () => {
    const local = (platform: Platform, token: string) => validateRegistration({ deviceId: "d", platform, token, displayName: "" }, true);
    expect(local("webhook", "http://127.0.0.1:8080/hook").token).toBe("http://127.0.0.1:8080/hook");
    expect(local("web-push", sub({ endpoint: "http://127.0.0.1:8081/push/x" })).token).toContain("http://127.0.0.1:8081/push/x");
    expect(refusal(() => local("webhook", "ftp://127.0.0.1/hook"))).toContain("must use https (got ftp)");
    expect(refusal(() => reg("webhook", "http://127.0.0.1:8080/hook"))).toContain("must use https (got http)");
  });

  it("token_hint is the last 8 characters", () => {
    expect(tokenHint("0123456789abcdef")).toBe("89abcdef");
    expect(tokenHint("short")).toBe("short");
  });
});

describe("validateNotification", () => {
  const n = (over: Partial<Parameters<typeof validateNotification>[0]> = {}) =>
    validateNotification({ notificationId: "chat:1:bob", userId: "bob", title: "t", body: "b", data: {}, expireAtMs: undefined, collapseKey: "", ...over }, NOW, LIMITS);

  it("defaults the expiry to 24 h; keeps a given one within 7 days; accepts every limit exactly", () => {
    expect(n().expireAtMs).toBe(NOW + 86_400_000);
    expect(n({ expireAtMs: NOW + 7 * 86_400_000 }).expireAtMs).toBe(NOW + 7 * 86_400_000);
    const data = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`.padEnd(64, "x"), "v".repeat(1_024)]));
    expect(n({ notificationId: "~".repeat(128), title: "t".repeat(200), body: "b".repeat(2_000), data, collapseKey: "c".repeat(64) }).expireAtMs).toBe(NOW + 86_400_000);
  });

  it.each([
    ["no id", { notificationId: "" }, "notification_id: is required"],
    ["long id", { notificationId: "x".repeat(129) }, "1-128 printable ASCII"],
    ["control char id", { notificationId: "a\nb" }, "printable ASCII"],
    ["non-ascii id", { notificationId: "é" }, "printable ASCII"],
    ["no user", { userId: "" }, "user_id: is required"],
    ["bad user", { userId: "has space" }, "user_id: must be"],
    ["title", { title: "t".repeat(201) }, "title: must be at most 200 characters (got 201)"],
    ["body", { body: "b".repeat(2_001) }, "body: must be at most 2000 characters (got 2001)"],
    ["entries", { data: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, "v"])) }, "data: must have at most 20 entries (got 21)"],
    ["empty key", { data: { "": "v" } }, "keys must be 1-64"],
    ["long key", { data: { ["k".repeat(65)]: "v" } }, "keys must be 1-64 characters (got 65)"],
    ["long value", { data: { k: "v".repeat(1_025) } }, "data[k]: must be at most 1024"],
    ["collapse key", { collapseKey: "c".repeat(65) }, "collapse_key: must be at most 64"],
    ["past expiry", { expireAtMs: NOW }, "expire_time: must be in the future"],
    ["far expiry", { expireAtMs: NOW + 7 * 86_400_000 + 1 }, "expire_time: must be at most 168 h ahead"],
  ])("refuses %s", (_, over, message) => {
    expect(refusal(() => n(over))).toContain(message);
  });
});
