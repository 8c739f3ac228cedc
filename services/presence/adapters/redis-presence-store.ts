/**
 * PresenceStore on Redis (ioredis), the model of ports.ts:
 *
 * - `<prefix>presence:{p}:u:<userId>`: a hash per user: `d:<deviceId>` -> deadline (ms),
 *   `l` last seen, `s` published state ("1" online / "0" offline), `c` when it last changed.
 *   Kept 30 days after the last heartbeat (last seen is answered that long).
 * - `<prefix>presence:{p}:due`: the expiry index, a sorted set userId -> the time the user must
 *   be looked at again (its last device deadline while online; the end of the damping while a
 *   change is held back). Offline users are not in it.
 *
 * Every change of one user is one Lua script (EVAL_USER below, the same rule as the memory
 * store), so two processes sweeping at once, or a heartbeat racing a sweep, publish each
 * transition exactly once. The sweep reads due users with ZRANGEBYSCORE (only those due), then
 * evaluates them in one script. The `{p}` hash tag keeps every presence key in one slot, so the
 * scripts stay valid on Redis Cluster (at the price of one shard for presence).
 */
import type { Redis } from "ioredis";
import { DomainError, unavailable } from "../../../platform/errors.js";
import type { DeviceBeat, PresenceRecord, PresenceStore, PresenceTimings, Transition } from "../ports.js";

/** Last seen is kept this long after a user's last heartbeat. */
export const LAST_SEEN_RETENTION_MS = 30 * 24 * 3600 * 1000;
/** Users per script call (a big ReportDevices batch is split). */
const CHUNK = 500;

// eval(key, due, user, now, dwell): prune expired devices, publish a change unless damped,
// re-schedule the user. Returns {user, "1"|"0"|"" (no transition), lastSeen, changedAt}.
const EVAL_USER = `
local function eval(key, due, user, now, dwell)
  local h = redis.call('HGETALL', key)
  local maxd, pub, chg, seen = 0, '0', 0, 0
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    if string.sub(f, 1, 2) == 'd:' then
      local d = tonumber(v)
      if d <= now then redis.call('HDEL', key, f) elseif d > maxd then maxd = d end
    elseif f == 's' then pub = v
    elseif f == 'c' then chg = tonumber(v)
    elseif f == 'l' then seen = tonumber(v) end
  end
  local actual = '0'
  if maxd > now then actual = '1' end
  local changed = ''
  if actual ~= pub and now - chg >= dwell then
    redis.call('HSET', key, 's', actual, 'c', now)
    pub = actual
    chg = now
    changed = actual
  end
  if pub ~= actual then redis.call('ZADD', due, chg + dwell, user)
  elseif actual == '1' then redis.call('ZADD', due, maxd, user)
  else redis.call('ZREM', due, user) end
  return {user, changed, tostring(seen), tostring(chg)}
end
`;

// KEYS: due, then one user hash per beat. ARGV: now, delta (timeout or grace), dwell, retention,
// mode ("hb" | "off"), then userId, deviceId per beat.
const BEAT_SCRIPT = `${EVAL_USER}
local now, delta, dwell, keep, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local user, device = ARGV[6 + 2 * (i - 2)], ARGV[7 + 2 * (i - 2)]
  local field = 'd:' .. device
  local go = true
  if mode == 'hb' then
    redis.call('HSET', key, field, now + delta)
  else
    local d = redis.call('HGET', key, field)
    if not d or tonumber(d) <= now then go = false
    elseif tonumber(d) > now + delta then redis.call('HSET', key, field, now + delta) end
  end
  if go then
    local l = tonumber(redis.call('HGET', key, 'l') or '0')
    if now > l then redis.call('HSET', key, 'l', now) end
    redis.call('PEXPIRE', key, keep)
    local r = eval(key, KEYS[1], user, now, dwell)
    if r[2] ~= '' then out[#out + 1] = r end
  end
end
return out`;

// KEYS: due, then one user hash per user. ARGV: now, dwell, then the user ids.
const SWEEP_SCRIPT = `${EVAL_USER}
local now, dwell = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 2, #KEYS do
  local user = ARGV[i + 1]
  local score = redis.call('ZSCORE', KEYS[1], user)
  if score and tonumber(score) <= now then
    local r = eval(KEYS[i], KEYS[1], user, now, dwell)
    if r[2] ~= '' then out[#out + 1] = r end
  end
end
return out`;

export interface RedisPresenceStoreOptions {
  /** Prepended to every key (tests isolate themselves with a random prefix). */
  readonly keyPrefix?: string;
}

export class RedisPresenceStore implements PresenceStore {
  private readonly prefix: string;
  private readonly dueKey: string;

  constructor(
    private readonly client: Redis,
    options: RedisPresenceStoreOptions = {},
  ) {
    this.prefix = `${options.keyPrefix ?? ""}presence:{p}:`;
    this.dueKey = `${this.prefix}due`;
  }

  heartbeat(beats: readonly DeviceBeat[], nowMs: number, t: PresenceTimings): Promise<Transition[]> {
    return this.beat(beats, nowMs, t.timeoutMs, t.minDwellMs, "hb");
  }

  goingOffline(beats: readonly DeviceBeat[], nowMs: number, t: PresenceTimings): Promise<Transition[]> {
    return this.beat(beats, nowMs, t.graceMs, t.minDwellMs, "off");
  }

  async read(userIds: readonly string[]): Promise<(PresenceRecord | undefined)[]> {
    if (userIds.length === 0) return [];
    const rows = await this.run("read", async () => {
      const p = this.client.pipeline();
      for (const id of userIds) p.hmget(this.userKey(id), "s", "l", "c");
      return (await p.exec()) ?? [];
    });
    return rows.map(([err, v]) => {
      if (err) throw new DomainError("Internal", `redis presence read failed: ${err.message}`);
      const [s, l, c] = v as (string | null)[];
      if (s == null && l == null) return undefined;
      return { online: s === "1", lastSeenMs: Number(l ?? 0), changedAtMs: Number(c ?? 0) };
    });
  }

  async sweep(nowMs: number, limit: number, t: PresenceTimings): Promise<{ transitions: Transition[]; more: boolean }> {
    const users = await this.run("sweep", () => this.client.zrangebyscore(this.dueKey, "-inf", nowMs, "LIMIT", 0, limit + 1));
    const batch = users.slice(0, limit);
    const transitions: Transition[] = [];
    for (let i = 0; i < batch.length; i += CHUNK) {
      const chunk = batch.slice(i, i + CHUNK);
      const keys = [this.dueKey, ...chunk.map((u) => this.userKey(u))];
      const r = await this.run("sweep", () => this.client.eval(SWEEP_SCRIPT, keys.length, ...keys, nowMs, t.minDwellMs, ...chunk));
      transitions.push(...toTransitions(r));
    }
    return { transitions, more: users.length > limit };
  }

  async ping(): Promise<void> {
    await this.run("ping", () => this.client.ping());
  }

  private async beat(beats: readonly DeviceBeat[], nowMs: number, delta: number, dwell: number, mode: "hb" | "off"): Promise<Transition[]> {
    const out: Transition[] = [];
    for (let i = 0; i < beats.length; i += CHUNK) {
      const chunk = beats.slice(i, i + CHUNK);
      const keys = [this.dueKey, ...chunk.map((b) => this.userKey(b.userId))];
      const args = chunk.flatMap((b) => [b.userId, b.deviceId]);
      const r = await this.run("heartbeat", () =>
        this.client.eval(BEAT_SCRIPT, keys.length, ...keys, nowMs, delta, dwell, LAST_SEEN_RETENTION_MS, mode, ...args),
      );
      out.push(...toTransitions(r));
    }
    return out;
  }

  private userKey(userId: string): string {
    return `${this.prefix}u:${userId}`;
  }

  private async run<T>(op: string, f: () => Promise<T>): Promise<T> {
    if (this.client.status !== "ready") {
      throw new DomainError("Unavailable", `presence store (redis) is unavailable (${this.client.status})`, { retryAfterMs: 1000 });
    }
    try {
      return await f();
    } catch (err) {
      if (err instanceof Error && err.name === "ReplyError") {
        throw new DomainError("Internal", `redis presence ${op} failed: ${err.message}`, {}, { cause: err });
      }
      throw unavailable("presence store (redis)", err);
    }
  }
}

function toTransitions(reply: unknown): Transition[] {
  return (reply as string[][]).map(([userId, state, seen, changed]) => ({
    userId: userId!,
    online: state === "1",
    lastSeenMs: Number(seen),
    changedAtMs: Number(changed),
  }));
}
