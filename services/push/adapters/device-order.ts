import type { StoredDevice } from "../ports.js";

/** ListDevices' order on every store: most recently updated first, then by device id (stable for equal times). */
export function newestFirst(devices: StoredDevice[]): StoredDevice[] {
  return devices.sort((a, b) => b.updatedAtMs - a.updatedAtMs || (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
}
