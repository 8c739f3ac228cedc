/**
 * Field rules of the push contract (push.proto). Pure: every refusal is an InvalidArgument
 * DomainError naming the field and the limit. Whether a well-formed target URL may be called at
 * all (allowlists, internal addresses) is the target policy's question (targets.ts).
 */
import { invalidArgument } from "../../../platform/errors.js";
import { USER_ID_RULE, isValidUserId } from "../../../platform/user-id.js";
import type { Platform } from "../ports.js";

export const MAX_DEVICE_ID_CHARS = 64;
export const MAX_TOKEN_CHARS = 4_096;
export const MAX_DISPLAY_NAME_CHARS = 100;
export const MAX_NOTIFICATION_ID_CHARS = 128;
export const MAX_TITLE_CHARS = 200;
export const MAX_BODY_CHARS = 2_000;
export const MAX_DATA_ENTRIES = 20;
export const MAX_DATA_KEY_CHARS = 64;
export const MAX_DATA_VALUE_CHARS = 1_024;
export const MAX_COLLAPSE_KEY_CHARS = 64;
export const APNS_TOKEN_HEX = { min: 64, max: 200 } as const;
/** Web Push keys (RFC 8291): an uncompressed P-256 point and a 16-byte auth secret. */
export const P256DH_BYTES = 65;
export const AUTH_SECRET_BYTES = 16;

const DEVICE_ID = /^[A-Za-z0-9_.:-]+$/;
const FCM_TOKEN = /^[A-Za-z0-9_:.-]+$/;
const HEX = /^[0-9a-fA-F]+$/;
const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

/** Characters as people count them (code points), for user-visible text. */
const chars = (s: string): number => [...s].length;

export function validateDeviceId(v: string, field = "device_id"): string {
  if (!v) throw invalidArgument(field, `is required (1-${MAX_DEVICE_ID_CHARS} characters of A-Z a-z 0-9 _ . : -)`);
  if (v.length > MAX_DEVICE_ID_CHARS || !DEVICE_ID.test(v)) {
    throw invalidArgument(field, `must be 1-${MAX_DEVICE_ID_CHARS} characters of A-Z a-z 0-9 _ . : - (got ${v.length} characters)`);
  }
  return v;
}

export interface DeviceRegistration {
  readonly deviceId: string;
  readonly platform: Platform;
  /** As stored: Web Push subscriptions are re-serialised canonically, so one subscription is one token. */
  readonly token: string;
  readonly displayName: string;
  /** The URL the push service will call for this device (Web Push endpoint, webhook); checked by the target policy. */
  readonly target?: URL;
}

/** RegisterDevice's fields; `platform` undefined = PLATFORM_UNSPECIFIED or an unknown value. */
export function validateRegistration(
  req: {
    readonly deviceId: string;
    readonly platform: Platform | undefined;
    readonly token: string;
    readonly displayName: string;
  },
  /** Plain http targets too: only with private targets allowed, i.e. local test endpoints. */
  allowHttp = false,
): DeviceRegistration {
  const deviceId = validateDeviceId(req.deviceId);
  if (req.platform === undefined) {
    throw invalidArgument("platform", "is required: one of PLATFORM_FCM, PLATFORM_APNS, PLATFORM_WEB_PUSH, PLATFORM_WEBHOOK");
  }
  if (!req.token) throw invalidArgument("token", `is required (1-${MAX_TOKEN_CHARS} characters)`);
  if (req.token.length > MAX_TOKEN_CHARS) throw invalidArgument("token", `must be at most ${MAX_TOKEN_CHARS} characters (got ${req.token.length})`);
  if (chars(req.displayName) > MAX_DISPLAY_NAME_CHARS) {
    throw invalidArgument("display_name", `must be at most ${MAX_DISPLAY_NAME_CHARS} characters (got ${chars(req.displayName)})`);
  }
  const base = { deviceId, platform: req.platform, displayName: req.displayName };
  switch (req.platform) {
    case "fcm":
      return { ...base, token: fcmToken(req.token) };
    case "apns":
      return { ...base, token: apnsToken(req.token) };
    case "web-push": {
      const sub = webPushSubscription(req.token, allowHttp);
      return { ...base, token: sub.token, target: sub.endpoint };
    }
    case "webhook": {
      // Stored as the parser spells it (host lower-cased, default port dropped): one URL, one token.
      const url = httpsTarget(req.token, "token", "webhook target", allowHttp);
      return { ...base, token: url.href, target: url };
    }
  }
}

function fcmToken(t: string): string {
  if (!FCM_TOKEN.test(t)) throw invalidArgument("token", "an FCM registration token is letters, digits and _ : . - only (no spaces or other characters)");
  return t;
}

function apnsToken(t: string): string {
  if (!HEX.test(t) || t.length % 2 !== 0 || t.length < APNS_TOKEN_HEX.min || t.length > APNS_TOKEN_HEX.max) {
    throw invalidArgument("token", `an APNs device token is hexadecimal, an even number of ${APNS_TOKEN_HEX.min}-${APNS_TOKEN_HEX.max} digits (got ${t.length} characters)`);
  }
  return t.toLowerCase();
}

/** The browser's PushSubscription JSON: {"endpoint": https URL, "keys": {"p256dh", "auth"}}. */
function webPushSubscription(t: string, allowHttp: boolean): { token: string; endpoint: URL } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(t);
  } catch {
    throw invalidArgument("token", 'a Web Push token is the PushSubscription as JSON: {"endpoint": "https://...", "keys": {"p256dh": "...", "auth": "..."}}');
  }
  const obj = isRecord(parsed) ? parsed : undefined;
  const endpoint = obj?.["endpoint"];
  if (typeof endpoint !== "string") throw invalidArgument("token.endpoint", "is required: the push service URL of the subscription");
  const url = httpsTarget(endpoint, "token.endpoint", "Web Push endpoint", allowHttp);
  const keys = obj?.["keys"];
  if (!isRecord(keys)) throw invalidArgument("token.keys", "is required: {p256dh, auth}");
  const p256dh = base64urlBytes(keys["p256dh"], "token.keys.p256dh", P256DH_BYTES);
  if (p256dh[0] !== 0x04) throw invalidArgument("token.keys.p256dh", "must be an uncompressed P-256 public key (first byte 0x04)");
  base64urlBytes(keys["auth"], "token.keys.auth", AUTH_SECRET_BYTES);
  // Canonical form: the same subscription sent with other key order or extra fields is one token.
  const token = JSON.stringify({ endpoint: url.href, keys: { p256dh: keys["p256dh"], auth: keys["auth"] } });
  if (token.length > MAX_TOKEN_CHARS) throw invalidArgument("token", `must be at most ${MAX_TOKEN_CHARS} characters`);
  return { token, endpoint: url };
}

function base64urlBytes(v: unknown, field: string, bytes: number): Buffer {
  if (typeof v !== "string" || !BASE64URL.test(v)) throw invalidArgument(field, `must be base64url of ${bytes} bytes`);
  const raw = Buffer.from(v.replace(/=+$/, ""), "base64url");
  if (raw.length !== bytes) throw invalidArgument(field, `must be base64url of ${bytes} bytes (got ${raw.length})`);
  return raw;
}

/**
 * An https URL without credentials (they would be sent to whoever the host is) or a fragment
 * (never sent, so a sign of a mistake). Which hosts are allowed is the target policy's call.
 */
export function httpsTarget(text: string, field: string, what: string, allowHttp = false): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalidArgument(field, `a ${what} must be an absolute https URL`);
  }
  if (url.protocol !== "https:" && !(allowHttp && url.protocol === "http:")) throw invalidArgument(field, `a ${what} must use https (got ${url.protocol.replace(/:$/, "")})`);
  if (url.username || url.password) throw invalidArgument(field, `a ${what} must not carry credentials (user:password@)`);
  if (url.hash || text.includes("#")) throw invalidArgument(field, `a ${what} must not have a fragment (#...)`);
  if (!url.hostname) throw invalidArgument(field, `a ${what} must name a host`);
  return url;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export interface NotificationRequest {
  readonly notificationId: string;
  readonly userId: string;
  readonly title: string;
  readonly body: string;
  readonly data: Readonly<Record<string, string>>;
  readonly expireAtMs: number | undefined;
  readonly collapseKey: string;
}

export interface NotificationLimits {
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
}

/** SendNotification's fields; returns the expiry to queue (the default when unset). */
export function validateNotification(req: NotificationRequest, nowMs: number, limits: NotificationLimits): { expireAtMs: number } {
  const id = req.notificationId;
  if (!id) throw invalidArgument("notification_id", `is required (1-${MAX_NOTIFICATION_ID_CHARS} printable ASCII characters)`);
  if (id.length > MAX_NOTIFICATION_ID_CHARS || !PRINTABLE_ASCII.test(id)) {
    throw invalidArgument("notification_id", `must be 1-${MAX_NOTIFICATION_ID_CHARS} printable ASCII characters (got ${id.length} characters)`);
  }
  if (!req.userId) throw invalidArgument("user_id", "is required (the recipient)");
  if (!isValidUserId(req.userId)) throw invalidArgument("user_id", `must be ${USER_ID_RULE}`);
  if (chars(req.title) > MAX_TITLE_CHARS) throw invalidArgument("title", `must be at most ${MAX_TITLE_CHARS} characters (got ${chars(req.title)})`);
  if (chars(req.body) > MAX_BODY_CHARS) throw invalidArgument("body", `must be at most ${MAX_BODY_CHARS} characters (got ${chars(req.body)})`);
  const entries = Object.entries(req.data);
  if (entries.length > MAX_DATA_ENTRIES) throw invalidArgument("data", `must have at most ${MAX_DATA_ENTRIES} entries (got ${entries.length})`);
  for (const [k, v] of entries) {
    if (k.length === 0 || chars(k) > MAX_DATA_KEY_CHARS) throw invalidArgument("data", `keys must be 1-${MAX_DATA_KEY_CHARS} characters (got ${chars(k)})`);
    if (chars(v) > MAX_DATA_VALUE_CHARS) throw invalidArgument(`data[${k}]`, `must be at most ${MAX_DATA_VALUE_CHARS} characters (got ${chars(v)})`);
  }
  if (chars(req.collapseKey) > MAX_COLLAPSE_KEY_CHARS) {
    throw invalidArgument("collapse_key", `must be at most ${MAX_COLLAPSE_KEY_CHARS} characters (got ${chars(req.collapseKey)})`);
  }
  if (req.expireAtMs === undefined) return { expireAtMs: nowMs + limits.defaultTtlMs };
  if (req.expireAtMs <= nowMs) throw invalidArgument("expire_time", "must be in the future");
  if (req.expireAtMs > nowMs + limits.maxTtlMs) {
    throw invalidArgument("expire_time", `must be at most ${Math.round(limits.maxTtlMs / 3_600_000)} h ahead (${limits.maxTtlMs} ms)`);
  }
  return { expireAtMs: req.expireAtMs };
}

/** What ListDevices shows of a token: its last 8 characters, never the whole. */
export const tokenHint = (token: string): string => token.slice(-8);
