/**
 * The in-process PresenceStore (memory engine): the same model as the Redis store (ports.ts),
 * with the expiry index as a min-heap of (due time, user) with lazy deletion, so a sweep touches
 * only the users that are due, never every online user.
 */
import type { DeviceBeat, PresenceRecord, PresenceStore, PresenceTimings, Transition } from "../ports.js";

interface UserState {
  /** deviceId -> deadline (ms). */
  readonly devices: Map<string, number>;
  online: boolean;
  changedAtMs: number;
  lastSeenMs: number;
}

export class MemoryPresenceStore implements PresenceStore {
  private readonly users = new Map<string, UserState>();
  /** userId -> its current due time in the index (absent: not in the index). */
  private readonly due = new Map<string, number>();
  private readonly heap = new MinHeap();

  async heartbeat(beats: readonly DeviceBeat[], nowMs: number, t: PresenceTimings): Promise<Transition[]> {
    const out: Transition[] = [];
    for (const { userId, deviceId } of beats) {
      const u = this.user(userId);
      u.devices.set(deviceId, nowMs + t.timeoutMs);
      u.lastSeenMs = Math.max(u.lastSeenMs, nowMs);
      const tr = this.evaluate(userId, u, nowMs, t.minDwellMs);
      if (tr) out.push(tr);
    }
    return out;
  }

  async goingOffline(beats: readonly DeviceBeat[], nowMs: number, t: PresenceTimings): Promise<Transition[]> {
    const out: Transition[] = [];
    for (const { userId, deviceId } of beats) {
      const u = this.users.get(userId);
      const deadline = u?.devices.get(deviceId);
      if (!u || deadline === undefined) continue;
      u.devices.set(deviceId, Math.min(deadline, nowMs + t.graceMs));
      u.lastSeenMs = Math.max(u.lastSeenMs, nowMs);
      const tr = this.evaluate(userId, u, nowMs, t.minDwellMs);
      if (tr) out.push(tr);
    }
    return out;
  }

  async read(userIds: readonly string[]): Promise<(PresenceRecord | undefined)[]> {
    return userIds.map((id) => {
      const u = this.users.get(id);
      return u ? { online: u.online, lastSeenMs: u.lastSeenMs, changedAtMs: u.changedAtMs } : undefined;
    });
  }

  async sweep(nowMs: number, limit: number, t: PresenceTimings): Promise<{ transitions: Transition[]; more: boolean }> {
    const transitions: Transition[] = [];
    let handled = 0;
    while (handled < limit) {
      const top = this.heap.peek();
      if (!top || top.at > nowMs) break;
      this.heap.pop();
      // Lazy deletion: an entry whose time is no longer the user's due time is stale.
      if (this.due.get(top.userId) !== top.at) continue;
      handled++;
      const u = this.users.get(top.userId);
      if (!u) {
        this.due.delete(top.userId);
        continue;
      }
      const tr = this.evaluate(top.userId, u, nowMs, t.minDwellMs);
      if (tr) transitions.push(tr);
    }
    const next = this.heap.peek();
    return { transitions, more: handled >= limit && next !== undefined && next.at <= nowMs };
  }

  async ping(): Promise<void> {}

  private user(userId: string): UserState {
    let u = this.users.get(userId);
    if (!u) {
      u = { devices: new Map(), online: false, changedAtMs: 0, lastSeenMs: 0 };
      this.users.set(userId, u);
    }
    return u;
  }

  /** The one rule of both stores (the Redis store's EVAL_USER script is the same, line by line). */
  private evaluate(userId: string, u: UserState, nowMs: number, minDwellMs: number): Transition | undefined {
    let maxDeadline = 0;
    for (const [device, deadline] of u.devices) {
      if (deadline <= nowMs) u.devices.delete(device);
      else if (deadline > maxDeadline) maxDeadline = deadline;
    }
    const actual = maxDeadline > nowMs;
    let transition: Transition | undefined;
    if (actual !== u.online && nowMs - u.changedAtMs >= minDwellMs) {
      u.online = actual;
      u.changedAtMs = nowMs;
      transition = { userId, online: actual, lastSeenMs: u.lastSeenMs, changedAtMs: nowMs };
    }
    if (u.online !== actual) this.schedule(userId, u.changedAtMs + minDwellMs);
    else if (actual) this.schedule(userId, maxDeadline);
    else this.due.delete(userId);
    return transition;
  }

  private schedule(userId: string, at: number): void {
    if (this.due.get(userId) === at) return;
    this.due.set(userId, at);
    this.heap.push({ at, userId });
  }
}

interface Entry {
  readonly at: number;
  readonly userId: string;
}

/** Binary min-heap on `at`. */
class MinHeap {
  private readonly items: Entry[] = [];

  peek(): Entry | undefined {
    return this.items[0];
  }

  push(e: Entry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.at <= a[i]!.at) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }

  pop(): Entry | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.at < a[m]!.at) m = l;
        if (r < a.length && a[r]!.at < a[m]!.at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}
