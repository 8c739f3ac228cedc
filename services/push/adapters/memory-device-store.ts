/**
 * DeviceStore in one process (the memory engine). Every operation runs to completion without
 * awaiting, so concurrent registers cannot race past the cap here.
 */
import type { DeviceStore, NewDevice, RegisterOutcome, StoredDevice } from "../ports.js";
import { newestFirst } from "./device-order.js";

export class MemoryDeviceStore implements DeviceStore {
  private readonly users = new Map<string, Map<string, StoredDevice>>();

  async register(device: NewDevice, maxDevices: number, nowMs: number): Promise<RegisterOutcome> {
    const mine = this.users.get(device.userId) ?? new Map<string, StoredDevice>();
    const existing = mine.get(device.deviceId);
    const replaced = [...mine.values()].filter((d) => d.deviceId !== device.deviceId && d.platform === device.platform && d.token === device.token);
    const others = mine.size - (existing ? 1 : 0) - replaced.length;
    if (!existing && others >= maxDevices) return { kind: "full", devices: mine.size };
    for (const r of replaced) mine.delete(r.deviceId);
    const stored: StoredDevice = { ...device, showPreview: device.showPreview === true, createdAtMs: existing?.createdAtMs ?? nowMs, updatedAtMs: nowMs };
    mine.set(device.deviceId, stored);
    this.users.set(device.userId, mine);
    return { kind: "registered", device: stored };
  }

  async unregister(userId: string, deviceId: string): Promise<void> {
    this.users.get(userId)?.delete(deviceId);
  }

  async list(userId: string): Promise<StoredDevice[]> {
    return newestFirst([...(this.users.get(userId)?.values() ?? [])]);
  }

  async removeIfToken(userId: string, deviceId: string, token: string): Promise<boolean> {
    const mine = this.users.get(userId);
    if (mine?.get(deviceId)?.token !== token) return false;
    mine.delete(deviceId);
    return true;
  }
}
