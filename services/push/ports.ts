/**
 * Push ports. The use cases (services/push/push.ts, services/push/worker.ts) only see these
 * interfaces; adapters live in services/push/adapters/ (memory and Cassandra), and
 * services/push/device-store.conformance.ts holds both stores to the same contract.
 *
 * Time is always passed in (`nowMs`): a store never reads a clock.
 */

export type Platform = "fcm" | "apns" | "web-push" | "webhook";

/** One registered device of one user, as stored (the full token stays inside the service). */
export interface StoredDevice {
  readonly userId: string;
  readonly deviceId: string;
  readonly platform: Platform;
  /** FCM registration token, APNs device token (hex), Web Push subscription JSON, webhook URL. */
  readonly token: string;
  readonly displayName: string;
  /** Notifications may carry their body (message text); false: the title only. */
  readonly showPreview: boolean;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
}

/** What a registration stores (times are the store's; no preview unless asked for). */
export type NewDevice = Omit<StoredDevice, "createdAtMs" | "updatedAtMs" | "showPreview"> & { readonly showPreview?: boolean };

export type RegisterOutcome =
  | { readonly kind: "registered"; readonly device: StoredDevice }
  /** The user already has `maxDevices` other devices. */
  | { readonly kind: "full"; readonly devices: number };

/**
 * DeviceStore: a user's devices (at most `maxDevices`), keyed by device id.
 *
 * - `register(device, maxDevices, nowMs)`: inserts or replaces the device with that id (its
 *   create time kept, update time = now). The same (platform, token) registered under another
 *   device id of the same user replaces that entry (a reinstalled app keeps one device). A new
 *   device beyond `maxDevices` is refused with `full`; replacing one never is.
 * - `unregister(userId, deviceId)`: removes it; unknown ids are fine.
 * - `list(userId)`: every device of the user, most recently updated first.
 * - `removeIfToken(userId, deviceId, token)`: removes the device only while it still has that
 *   token (a dead-token answer must not remove a device re-registered since with a new token);
 *   true when removed.
 */
export interface DeviceStore {
  register(device: NewDevice, maxDevices: number, nowMs: number): Promise<RegisterOutcome>;
  unregister(userId: string, deviceId: string): Promise<void>;
  list(userId: string): Promise<StoredDevice[]>;
  removeIfToken(userId: string, deviceId: string, token: string): Promise<boolean>;
  close?(): Promise<void>;
}

/** A notification as queued (switchboard.events.v1.PushRequest) and handed to providers. */
export interface Notification {
  /** The dedupe key; providers receive it as their collapse / message id. */
  readonly id: string;
  readonly userId: string;
  readonly title: string;
  readonly body: string;
  readonly data: Readonly<Record<string, string>>;
  /** Optional provider collapse key / APNs thread id chosen by the caller (e.g. a channel id). */
  readonly collapseKey: string;
  readonly expireAtMs: number;
  readonly createdAtMs: number;
}
