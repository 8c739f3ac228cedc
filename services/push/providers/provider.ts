/**
 * A push provider: sends one notification to one device and classifies the provider's answer.
 * Providers never throw for a provider answer; `send` rejects only for a bug. A network error
 * (refused, reset, timeout) is a `retry`.
 */
import type { Notification, Platform, StoredDevice } from "../ports.js";

export type SendOutcome =
  | { readonly kind: "sent" }
  /** A retryable answer (429, 5xx, FCM UNAVAILABLE / INTERNAL / QUOTA_EXCEEDED, network). */
  | { readonly kind: "retry"; readonly reason: string; readonly retryAfterMs?: number }
  /** The token is dead (FCM UNREGISTERED / invalid token, APNs 410 / BadDeviceToken, Web Push 404 / 410). */
  | { readonly kind: "dead-token"; readonly reason: string }
  /** Refused for good (a malformed request, a bad credential): neither retried nor the device removed. */
  | { readonly kind: "failed"; readonly reason: string };

export interface PushProvider {
  readonly platform: Platform;
  send(device: StoredDevice, notification: Notification, signal?: AbortSignal): Promise<SendOutcome>;
  close?(): Promise<void>;
}
