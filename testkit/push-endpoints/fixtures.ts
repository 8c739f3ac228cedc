/** Devices and notifications for provider tests. */
import { randomBytes, randomUUID } from "node:crypto";
import type { Notification, Platform, StoredDevice } from "../../services/push/ports.js";

export function testDevice(platform: Platform, token: string): StoredDevice {
  return { userId: "alice", deviceId: `dev-${randomUUID()}`, platform, token, displayName: platform, showPreview: true, createdAtMs: 0, updatedAtMs: 0 };
}

export function testNotification(nowMs: number, overrides: Partial<Notification> = {}): Notification {
  return {
    id: `n-${randomUUID()}`,
    userId: "alice",
    title: "bob",
    body: "hi alice",
    data: { channel_id: "c1" },
    collapseKey: "c1",
    expireAtMs: nowMs + 3_600_000,
    createdAtMs: nowMs,
    ...overrides,
  };
}

/** An APNs device token: 32 bytes in hex, as an iOS app reports it. */
export const apnsDeviceToken = (): string => randomBytes(32).toString("hex");
