/**
 * DeviceStore on Cassandra / ScyllaDB.
 *
 * push_devices: one partition per user, one row per device. A user has a handful of devices, so
 * every operation reads the whole partition (one small read) and sorts in memory; no secondary
 * index on the token is needed to find "the same token under another device id".
 *
 * The cap without a lock: register reads the partition, refuses when full, writes, and (for a new
 * device) reads again; over the cap it deletes its own row again, recognised by the write_id it
 * wrote (`IF write_id = ?`, so a later re-registration of that device id is never undone) and
 * answers `full`. Of registers that race, every one whose re-read saw more than the cap undoes
 * itself, and the last one to keep its row saw every kept row: the cap holds, at the price of
 * occasionally refusing both of two racers (the client retries). Plain writes plus two LWTs that
 * only delete: portable between Cassandra 5 and ScyllaDB.
 */
import { randomUUID } from "node:crypto";
import { migrateOnFirstUse } from "../../../platform/cassandra/migrations.js";
import type { CqlOptions, CqlRow, CqlSession } from "../../../platform/cassandra/session.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { pushMigrations } from "../migrations.js";
import type { DeviceStore, NewDevice, Platform, RegisterOutcome, StoredDevice } from "../ports.js";
import { newestFirst } from "./device-order.js";

const PLATFORMS: ReadonlySet<string> = new Set<Platform>(["fcm", "apns", "web-push", "webhook"]);
const read: CqlOptions = { idempotent: true };
const write: CqlOptions = { idempotent: true };

interface Row extends StoredDevice {
  readonly writeId: string;
}

export class CassandraDeviceStore implements DeviceStore {
  /** Applies this store's migrations once (idempotent); operations call it themselves. */
  readonly ensureSchema: () => Promise<void>;

  constructor(
    private readonly cql: CqlSession,
    log?: EngineLog,
  ) {
    this.ensureSchema = migrateOnFirstUse(cql, pushMigrations, log);
  }

  async register(device: NewDevice, maxDevices: number, nowMs: number): Promise<RegisterOutcome> {
    await this.ensureSchema();
    const before = await this.rows(device.userId);
    const existing = before.find((d) => d.deviceId === device.deviceId);
    const replaced = before.filter((d) => d.deviceId !== device.deviceId && d.platform === device.platform && d.token === device.token);
    if (!existing && before.length - replaced.length >= maxDevices) return { kind: "full", devices: before.length };
    const writeId = randomUUID();
    const stored: StoredDevice = { ...device, showPreview: device.showPreview === true, createdAtMs: existing?.createdAtMs ?? nowMs, updatedAtMs: nowMs };
    await this.cql.execute(
      "INSERT INTO push_devices (user_id, device_id, platform, device_token, display_name, show_preview, created_at, updated_at, write_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      [device.userId, device.deviceId, device.platform, device.token, device.displayName, device.showPreview === true, new Date(stored.createdAtMs), new Date(nowMs), writeId],
      write,
    );
    // Only while the row still has the token we matched: it may have been re-registered since.
    await Promise.all(replaced.map((r) => this.removeIfToken(r.userId, r.deviceId, r.token)));
    if (!existing) {
      const after = await this.rows(device.userId);
      if (after.length > maxDevices) {
        await this.cql.executeLwt("DELETE FROM push_devices WHERE user_id = ? AND device_id = ? IF write_id = ?", [
          device.userId,
          device.deviceId,
          writeId,
        ]);
        return { kind: "full", devices: after.length - 1 };
      }
    }
    return { kind: "registered", device: stored };
  }

  async unregister(userId: string, deviceId: string): Promise<void> {
    await this.ensureSchema();
    await this.cql.execute("DELETE FROM push_devices WHERE user_id = ? AND device_id = ?", [userId, deviceId], write);
  }

  async list(userId: string): Promise<StoredDevice[]> {
    await this.ensureSchema();
    return newestFirst((await this.rows(userId)).map(({ writeId: _, ...d }) => d));
  }

  async removeIfToken(userId: string, deviceId: string, token: string): Promise<boolean> {
    await this.ensureSchema();
    return this.cql.executeLwt("DELETE FROM push_devices WHERE user_id = ? AND device_id = ? IF device_token = ?", [userId, deviceId, token]);
  }

  private async rows(userId: string): Promise<Row[]> {
    const rows = await this.cql.execute(
      "SELECT device_id, platform, device_token, display_name, show_preview, created_at, updated_at, write_id FROM push_devices WHERE user_id = ?",
      [userId],
      read,
    );
    return rows.map((r) => toRow(userId, r)).filter((d): d is Row => d !== undefined);
  }
}

function toRow(userId: string, r: CqlRow): Row | undefined {
  const platform = r["platform"];
  const created = r["created_at"];
  const updated = r["updated_at"];
  // A row cut in half (a delete racing an insert of other columns) is not a device.
  if (typeof platform !== "string" || !PLATFORMS.has(platform) || typeof r["device_token"] !== "string" || !(updated instanceof Date)) return undefined;
  return {
    userId,
    deviceId: String(r["device_id"]),
    platform: platform as Platform,
    token: r["device_token"],
    displayName: typeof r["display_name"] === "string" ? r["display_name"] : "",
    showPreview: r["show_preview"] === true,
    createdAtMs: created instanceof Date ? created.getTime() : updated.getTime(),
    updatedAtMs: updated.getTime(),
    writeId: String(r["write_id"] ?? ""),
  };
}
