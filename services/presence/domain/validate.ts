/**
 * Field rules of the presence contract (presence.proto). Pure: every refusal is an
 * InvalidArgument DomainError naming the field.
 */
import { invalidArgument } from "../../../platform/errors.js";
import { USER_ID_RULE, isValidUserId } from "../../../platform/user-id.js";

/** GetPresence and WatchPresence: users per request. */
export const MAX_USERS_PER_REQUEST = 500;
/** ReportDevices: live + gone devices per request. */
export const MAX_REPORTED_DEVICES = 10_000;
/** User ids per ListOnline (internal): a group of the largest configurable size fits in one call. */
export const MAX_ONLINE_QUERY = 1_000;

const DEVICE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

export function validateDeviceId(v: string, field = "device_id"): string {
  if (!v) throw invalidArgument(field, "is required (1-64 characters of A-Z a-z 0-9 _ . : -)");
  if (!DEVICE_ID.test(v)) throw invalidArgument(field, "must be 1-64 characters of A-Z a-z 0-9 _ . : -");
  return v;
}

export function validateUserId(v: string, field: string): string {
  if (!v) throw invalidArgument(field, "is required");
  if (!isValidUserId(v)) throw invalidArgument(field, `must be ${USER_ID_RULE}`);
  return v;
}

/** 1..500 distinct valid user ids, in request order. */
export function validateUserIds(ids: readonly string[], field = "user_ids", max = MAX_USERS_PER_REQUEST): readonly string[] {
  if (ids.length === 0) throw invalidArgument(field, `must name 1-${max} users (got none)`);
  if (ids.length > max) throw invalidArgument(field, `must name at most ${max} users (got ${ids.length})`);
  const seen = new Set<string>();
  ids.forEach((u, i) => {
    validateUserId(u, `${field}[${i}]`);
    if (seen.has(u)) throw invalidArgument(`${field}[${i}]`, "repeats an earlier user id (ids must be distinct)");
    seen.add(u);
  });
  return ids;
}
