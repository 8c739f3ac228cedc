/**
 * Announcing transitions: look up each transition's contacts and hand it to the publisher, with
 * bounded work, behind the heartbeat.
 *
 * Why: a login storm (10,000 users online within one 10 s interval, 1,000 transitions/s) used to
 * start one contacts lookup (Cassandra reads) per transition at once, unbounded. The lookups piled
 * up in the driver, the event loop drowned, and the heartbeats' Redis calls missed their client
 * timeout (UNAVAILABLE) with Redis idle: users who kept beating were published offline. Announcing
 * is best effort (at most once, like the bus under it), so under overload it is the part that
 * waits or is dropped, never the heartbeat.
 *
 * - `offer` is synchronous and never throws: the heartbeat (or sweep) that decided a transition
 *   answers without waiting for its announcement.
 * - Pending transitions are kept per user, newest wins (by changedAtMs): a user who flips twice
 *   before being announced costs one lookup, and the newest state is what watchers keep anyway
 *   (their outboxes hold one presence per user).
 * - At most `concurrency` lookups run at once, oldest pending user first.
 * - At most `maxPending` users wait; a transition of a further user is dropped and counted (it
 *   stays in the store: GetPresence and new watches see it). Memory is thus bounded whatever the
 *   rate of transitions.
 */
import type { PresenceChange } from "./presence.js";
import type { Contacts, Transition } from "./ports.js";

export interface AnnouncerStats {
  /** A transition waited this long from offer to publish (ms). */
  onDelay?(ms: number): void;
  /** A transition was dropped: the queue was full. */
  onDropped?(n: number): void;
  /** Users waiting to be announced now. */
  onPending?(n: number): void;
}

export interface AnnouncerOptions {
  readonly contacts: Pick<Contacts, "contactsOf">;
  /** Hands announced transitions on (must not throw). */
  readonly publish: (changes: readonly PresenceChange[]) => void;
  /** Contacts lookups in flight at most. */
  readonly concurrency: number;
  /** Users waiting to be announced at most; beyond, transitions are dropped. */
  readonly maxPending: number;
  readonly now?: () => number;
  readonly onError?: (what: string, err: unknown) => void;
  readonly stats?: AnnouncerStats;
}

interface Pending {
  transition: Transition;
  /** When the first transition still pending for this user was offered. */
  readonly since: number;
}

export class Announcer {
  /** userId -> pending transition, in the order users became pending (Map order = FIFO). */
  private readonly pending = new Map<string, Pending>();
  private running = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private readonly now: () => number;
  private readonly onError: (what: string, err: unknown) => void;

  constructor(private readonly opts: AnnouncerOptions) {
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError ?? (() => {});
  }

  /** Transitions lookups in flight (for tests and diagnostics). */
  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.pending.size;
  }

  /** Queues transitions for announcing; returns at once. */
  offer(ts: readonly Transition[]): void {
    if (this.closed || ts.length === 0) return;
    let dropped = 0;
    for (const t of ts) {
      const p = this.pending.get(t.userId);
      if (p) {
        // Same user still waiting: one lookup for both, the newer state wins.
        if (t.changedAtMs >= p.transition.changedAtMs) p.transition = t;
        continue;
      }
      if (this.pending.size >= this.opts.maxPending) {
        dropped++;
        continue;
      }
      this.pending.set(t.userId, { transition: t, since: this.now() });
    }
    if (dropped) this.opts.stats?.onDropped?.(dropped);
    this.opts.stats?.onPending?.(this.pending.size);
    this.pump();
  }

  /** Resolves when nothing is pending or in flight (tests, orderly close). */
  idle(): Promise<void> {
    if (this.running === 0 && this.pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops announcing: pending transitions are dropped (they are in the store); lookups in flight finish. */
  close(): void {
    this.closed = true;
    if (this.pending.size) this.opts.stats?.onDropped?.(this.pending.size);
    this.pending.clear();
    this.opts.stats?.onPending?.(0);
    this.settle();
  }

  private pump(): void {
    while (this.running < this.opts.concurrency && this.pending.size > 0) {
      const [userId, p] = this.pending.entries().next().value as [string, Pending];
      this.pending.delete(userId);
      this.running++;
      void this.announce(p).finally(() => {
        this.running--;
        this.opts.stats?.onPending?.(this.pending.size);
        this.pump();
        this.settle();
      });
    }
  }

  private async announce(p: Pending): Promise<void> {
    let contacts: ReadonlySet<string>;
    try {
      contacts = await this.opts.contacts.contactsOf(p.transition.userId);
    } catch (e) {
      // Nobody may be told without knowing who may: the transition stays in the store (GetPresence).
      this.onError("contacts of a transition", e);
      return;
    }
    if (this.closed) return;
    this.opts.stats?.onDelay?.(this.now() - p.since);
    this.opts.publish([{ transition: p.transition, contactUserIds: [...contacts] }]);
  }

  private settle(): void {
    if (this.running > 0 || this.pending.size > 0) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }
}
