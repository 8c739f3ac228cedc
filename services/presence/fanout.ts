/**
 * Transitions on the bus and WatchPresence streams.
 *
 * Publishing: each transition is one switchboard.events.v1.PresenceChanged on
 * `switchboard.presence.changed` (core NATS, at most once), naming the contacts allowed to see it.
 *
 * PresenceWatchHub: one per process; one bus subscription for all its streams. A message is
 * decoded once and handed only to streams that watch its user AND whose caller is in its contact
 * list, so a non-contact learns nothing even when it asked to watch. Each stream's outbox holds
 * at most one pending presence per watched user (a newer one replaces it), so it is bounded by the
 * watched set (at most 500) whatever the rate of transitions or the speed of the reader; presences
 * that are not newer (changed_at) than what the stream already has, or that repeat the state it
 * last sent, are dropped.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { PresenceChangedSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import { PresenceState } from "../../gen/switchboard/presence/v1/presence_pb.js";
import { DomainError } from "../../platform/errors.js";
import type { BusMessage, EventBus, Unsubscribe } from "../../platform/ports/event-bus.js";
import type { PresenceChange, PresenceView } from "./presence.js";

export const PRESENCE_CHANGED_SUBJECT = "switchboard.presence.changed";

export function encodeChange(c: PresenceChange): Uint8Array {
  const t = c.transition;
  return toBinary(
    PresenceChangedSchema,
    create(PresenceChangedSchema, {
      userId: t.userId,
      state: t.online ? PresenceState.ONLINE : PresenceState.OFFLINE,
      lastSeenTime: timestampFromMs(t.lastSeenMs),
      contactUserIds: [...c.contactUserIds],
      time: timestampFromMs(t.changedAtMs),
    }),
  );
}

/** Publishes each change; a bus that is down loses it (logged), like every live event. */
export function busPublisher(bus: EventBus, onError: (what: string, err: unknown) => void): (changes: readonly PresenceChange[]) => void {
  return (changes) => {
    for (const c of changes) {
      try {
        bus.publish(PRESENCE_CHANGED_SUBJECT, encodeChange(c));
      } catch (e) {
        onError("publish PresenceChanged", e);
      }
    }
  };
}

export interface PresenceWatchHubOptions {
  /** Concurrent WatchPresence streams per caller. */
  readonly maxPerCaller: number;
  readonly onError?: (what: string, err: unknown) => void;
}

export interface PresenceWatch {
  /** The stream's first answer (call once): the watched users' state, in request order. */
  start(snapshot: readonly PresenceView[]): void;
  /** Presences in order: the snapshot first, then transitions as they come. */
  views(signal: AbortSignal): AsyncGenerator<PresenceView>;
  close(): void;
}

class Watcher implements PresenceWatch {
  /** userId -> pending presence, in the order they became pending. */
  private outbox = new Map<string, PresenceView>();
  /** userId -> the newest changed_at and state handed to the outbox. */
  private readonly latest = new Map<string, { at: number; state: string }>();
  private started = false;
  private wake: (() => void) | undefined;
  private failure: DomainError | undefined;

  constructor(
    readonly callerId: string,
    readonly userIds: readonly string[],
    private readonly onClose: () => void,
  ) {}

  offer(v: PresenceView): void {
    const last = this.latest.get(v.userId);
    if (last && v.changedAtMs <= last.at) return;
    this.latest.set(v.userId, { at: v.changedAtMs, state: v.state });
    if (last && last.state === v.state) return;
    this.outbox.delete(v.userId);
    this.outbox.set(v.userId, v);
    if (this.started) this.wake?.();
  }

  start(snapshot: readonly PresenceView[]): void {
    // Transitions that came in while the snapshot was read win when newer.
    const early = this.outbox;
    this.outbox = new Map();
    for (const s of snapshot) {
      const e = early.get(s.userId);
      const v = e && e.changedAtMs > s.changedAtMs ? e : s;
      this.outbox.set(s.userId, v);
      const last = this.latest.get(s.userId);
      if (!last || v.changedAtMs > last.at) this.latest.set(s.userId, { at: v.changedAtMs, state: v.state });
    }
    this.started = true;
    this.wake?.();
  }

  fail(err: DomainError): void {
    this.failure ??= err;
    this.wake?.();
  }

  async *views(signal: AbortSignal): AsyncGenerator<PresenceView> {
    const aborted = new Promise<void>((r) => {
      if (signal.aborted) r();
      else signal.addEventListener("abort", () => r(), { once: true });
    });
    while (!signal.aborted) {
      if (this.started) {
        const first = this.outbox.entries().next();
        if (!first.done) {
          this.outbox.delete(first.value[0]);
          yield first.value[1];
          continue;
        }
      }
      if (this.failure) throw this.failure;
      await Promise.race([new Promise<void>((r) => (this.wake = r)), aborted]);
      this.wake = undefined;
    }
  }

  close(): void {
    this.onClose();
  }
}

export class PresenceWatchHub {
  private readonly byUser = new Map<string, Set<Watcher>>();
  private readonly perCaller = new Map<string, number>();
  private readonly unsubscribe: Unsubscribe;
  private readonly onError: (what: string, err: unknown) => void;

  constructor(
    bus: EventBus,
    private readonly opts: PresenceWatchHubOptions,
  ) {
    this.onError = opts.onError ?? (() => {});
    this.unsubscribe = bus.subscribe(PRESENCE_CHANGED_SUBJECT, (msg) => this.onMessage(msg));
  }

  /** Registers a stream (before its snapshot is read, so no transition falls in between). */
  watch(callerId: string, userIds: readonly string[]): PresenceWatch {
    const count = this.perCaller.get(callerId) ?? 0;
    if (count >= this.opts.maxPerCaller) {
      throw new DomainError(
        "ResourceExhausted",
        `too many WatchPresence streams for this caller: at most ${this.opts.maxPerCaller} at once; close one first`,
      );
    }
    this.perCaller.set(callerId, count + 1);
    let closed = false;
    const w: Watcher = new Watcher(callerId, userIds, () => {
      if (closed) return;
      closed = true;
      for (const u of userIds) {
        const set = this.byUser.get(u);
        set?.delete(w);
        if (set?.size === 0) this.byUser.delete(u);
      }
      const left = (this.perCaller.get(callerId) ?? 1) - 1;
      if (left === 0) this.perCaller.delete(callerId);
      else this.perCaller.set(callerId, left);
    });
    for (const u of userIds) {
      let set = this.byUser.get(u);
      if (!set) this.byUser.set(u, (set = new Set()));
      set.add(w);
    }
    return w;
  }

  close(): void {
    this.unsubscribe();
    for (const set of this.byUser.values()) {
      for (const w of set) w.fail(new DomainError("Unavailable", "the presence service is shutting down; reconnect"));
    }
  }

  private onMessage(msg: BusMessage): void {
    let ev;
    try {
      ev = fromBinary(PresenceChangedSchema, msg.data);
    } catch (e) {
      this.onError("decode PresenceChanged", e);
      return;
    }
    const watchers = this.byUser.get(ev.userId);
    if (!watchers) return;
    const allowed = new Set(ev.contactUserIds);
    const view: PresenceView = {
      userId: ev.userId,
      state: ev.state === PresenceState.ONLINE ? "online" : "offline",
      ...(ev.lastSeenTime ? { lastSeenMs: timestampDate(ev.lastSeenTime).getTime() } : {}),
      changedAtMs: ev.time ? timestampDate(ev.time).getTime() : 0,
    };
    for (const w of watchers) if (allowed.has(w.callerId) || w.callerId === ev.userId) w.offer(view);
  }
}
