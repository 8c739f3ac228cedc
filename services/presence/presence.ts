/**
 * Presence use cases, on the ports only (no I/O of their own, no Connect): heartbeats and chat
 * reports into the store, reads with visibility, the sweep, and handing transitions with their
 * contacts to the publisher.
 *
 * Visibility (privacy): a user the caller may not see is answered exactly like a user who does
 * not exist (`state: "unknown"`, no last seen).
 * - GetPresence: the caller itself and everyone sharing a channel with it, any size (the issue:
 *   "for larger groups presence is read on demand").
 * - WatchPresence and transitions: contacts only (direct channels, groups up to the fan-out size).
 */
import type { PresenceConfig } from "../../platform/config.js";
import { DomainError } from "../../platform/errors.js";
import type { Cache } from "../../platform/ports/cache.js";
import { Announcer, type AnnouncerStats } from "./announcer.js";
import { validateDeviceId } from "./domain/validate.js";
import type { Contacts, DeviceBeat, PresenceStore, PresenceTimings, Transition } from "./ports.js";

/** Heartbeats (and going_offline calls) one device may send per heartbeat interval. */
export const HEARTBEATS_PER_INTERVAL = 20;
/** Users handled per sweep call. */
const SWEEP_BATCH = 1_000;
/** Sweep calls per tick at most (the rest waits for the next tick). */
const SWEEP_BATCHES_PER_TICK = 20;
/** channelsOf lookups in flight for one GetPresence. */
const PARALLEL_LOOKUPS = 32;
/** Contacts lookups in flight for announcing transitions (services/presence/announcer.ts). */
export const ANNOUNCE_CONCURRENCY = 16;
/** Users waiting to be announced at most (a login storm of 10,000 users fits; beyond, dropped). */
export const ANNOUNCE_MAX_PENDING = 20_000;

export type PresenceStateName = "online" | "offline" | "unknown";

export interface PresenceView {
  readonly userId: string;
  readonly state: PresenceStateName;
  /** Absent for "unknown". */
  readonly lastSeenMs?: number;
  /** The state's version (later wins); -1 for "unknown". */
  readonly changedAtMs: number;
}

/** A transition and who may be told of it. */
export interface PresenceChange {
  readonly transition: Transition;
  readonly contactUserIds: readonly string[];
}

export interface PresenceDeps {
  readonly store: PresenceStore;
  readonly contacts: Contacts;
  /** Counts heartbeats per device (fixed windows of one interval). */
  readonly limiter: Cache;
  readonly config: PresenceConfig;
  /** Hands decided transitions on (the module publishes them on the bus). Must not throw. */
  readonly publish: (changes: readonly PresenceChange[]) => void;
  readonly now?: () => number;
  readonly onError?: (what: string, err: unknown) => void;
  /** Announcing limits and metrics (defaults: ANNOUNCE_CONCURRENCY, ANNOUNCE_MAX_PENDING). */
  readonly announce?: { readonly concurrency?: number; readonly maxPending?: number; readonly stats?: AnnouncerStats };
}

export class Presence {
  readonly config: PresenceConfig;
  readonly timings: PresenceTimings;
  private readonly now: () => number;
  private readonly onError: (what: string, err: unknown) => void;
  /** Transitions to contacts, bounded and behind the heartbeat (never awaited by it). */
  readonly announcer: Announcer;

  constructor(private readonly deps: PresenceDeps) {
    this.config = deps.config;
    this.timings = { timeoutMs: deps.config.timeoutMs, graceMs: deps.config.graceMs, minDwellMs: deps.config.minDwellMs };
    this.now = deps.now ?? Date.now;
    this.onError = deps.onError ?? (() => {});
    this.announcer = new Announcer({
      contacts: deps.contacts,
      publish: deps.publish,
      concurrency: deps.announce?.concurrency ?? ANNOUNCE_CONCURRENCY,
      maxPending: deps.announce?.maxPending ?? ANNOUNCE_MAX_PENDING,
      now: this.now,
      onError: this.onError,
      ...(deps.announce?.stats ? { stats: deps.announce.stats } : {}),
    });
  }

  /** One device's heartbeat, or its going offline; rate limited per device. */
  async heartbeat(userId: string, deviceId: string, goingOffline: boolean): Promise<void> {
    validateDeviceId(deviceId);
    await this.limit(userId, deviceId);
    const beat = [{ userId, deviceId }];
    const now = this.now();
    const ts = goingOffline ? await this.deps.store.goingOffline(beat, now, this.timings) : await this.deps.store.heartbeat(beat, now, this.timings);
    this.announce(ts);
  }

  /** A chat server's report of the devices holding its streams (validated by the caller). */
  async report(live: readonly DeviceBeat[], gone: readonly DeviceBeat[]): Promise<void> {
    const now = this.now();
    const ts = [
      ...(live.length ? await this.deps.store.heartbeat(live, now, this.timings) : []),
      ...(gone.length ? await this.deps.store.goingOffline(gone, now, this.timings) : []),
    ];
    this.announce(ts);
  }

  /** GetPresence: the caller and users sharing any channel with it; the rest "unknown". */
  async get(callerId: string, userIds: readonly string[]): Promise<PresenceView[]> {
    const visible = await this.visibleForGet(callerId, userIds);
    return this.views(userIds, visible);
  }

  /** ListOnline (internal, no contact filter): the users whose published state is online, in order. */
  async online(userIds: readonly string[]): Promise<string[]> {
    const records = await this.deps.store.read(userIds, this.now());
    return userIds.filter((_, i) => records[i]?.online === true);
  }

  /** WatchPresence's first answer: the caller and its contacts; the rest "unknown". */
  async snapshotForWatch(callerId: string, userIds: readonly string[]): Promise<PresenceView[]> {
    const contacts = await this.deps.contacts.contactsOf(callerId);
    return this.views(userIds, new Set(userIds.filter((u) => u === callerId || contacts.has(u))));
  }

  /** One sweep tick (leader only): due users re-evaluated, transitions announced. */
  async sweep(): Promise<number> {
    let n = 0;
    for (let i = 0; i < SWEEP_BATCHES_PER_TICK; i++) {
      const r = await this.deps.store.sweep(this.now(), SWEEP_BATCH, this.timings);
      n += r.transitions.length;
      this.announce(r.transitions);
      if (!r.more) break;
    }
    return n;
  }

  /** Queues transitions for their contacts (best effort, bounded: see announcer.ts); returns at once. */
  private announce(ts: readonly Transition[]): void {
    this.announcer.offer(ts);
  }

  private async views(userIds: readonly string[], visible: ReadonlySet<string>): Promise<PresenceView[]> {
    const shown = userIds.filter((u) => visible.has(u));
    const records = await this.deps.store.read(shown, this.now());
    const byUser = new Map(shown.map((u, i) => [u, records[i]]));
    return userIds.map((userId) => {
      const r = byUser.get(userId);
      if (!r) return { userId, state: "unknown", changedAtMs: -1 };
      return { userId, state: r.online ? "online" : "offline", lastSeenMs: r.lastSeenMs, changedAtMs: r.changedAtMs };
    });
  }

  private async visibleForGet(callerId: string, userIds: readonly string[]): Promise<Set<string>> {
    const contacts = await this.deps.contacts.contactsOf(callerId);
    const visible = new Set(userIds.filter((u) => u === callerId || contacts.has(u)));
    const rest = userIds.filter((u) => !visible.has(u));
    if (rest.length === 0) return visible;
    // Members of large groups: visible on demand when they share a channel with the caller.
    const mine = await this.deps.contacts.channelsOf(callerId);
    if (mine.size === 0) return visible;
    for (let i = 0; i < rest.length; i += PARALLEL_LOOKUPS) {
      const chunk = rest.slice(i, i + PARALLEL_LOOKUPS);
      const theirs = await Promise.all(chunk.map((u) => this.deps.contacts.channelsOf(u)));
      chunk.forEach((u, j) => {
        for (const c of theirs[j]!) {
          if (mine.has(c)) {
            visible.add(u);
            break;
          }
        }
      });
    }
    return visible;
  }

  private async limit(userId: string, deviceId: string): Promise<void> {
    let count: number;
    try {
      count = await this.deps.limiter.increment(`presence:hb:${userId} ${deviceId}`, this.config.heartbeatIntervalMs);
    } catch (e) {
      // The counter is a guard, not a need: without it heartbeats go on (the store has its own limits).
      this.onError("heartbeat rate counter", e);
      return;
    }
    if (count > HEARTBEATS_PER_INTERVAL) {
      throw new DomainError(
        "ResourceExhausted",
        `too many heartbeats for device: at most ${HEARTBEATS_PER_INTERVAL} per ${this.config.heartbeatIntervalMs} ms (send one every ${this.config.heartbeatIntervalMs} ms)`,
        { retryAfterMs: this.config.heartbeatIntervalMs },
      );
    }
  }
}
