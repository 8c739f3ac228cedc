/**
 * Presence ports. The use cases (services/presence/presence.ts) only see these interfaces;
 * adapters live in services/presence/adapters/ (memory and Redis), and
 * services/presence/presence-store.conformance.ts holds both stores to the same contract.
 *
 * Time is always passed in (`nowMs`): a store never reads a clock, so the contract is tested
 * without sleeping and every process of a cluster decides with its own clock the same way.
 */

/** One device of one user. */
export interface DeviceBeat {
  readonly userId: string;
  readonly deviceId: string;
}

/** The timings a store applies (config.presence). */
export interface PresenceTimings {
  /** A heartbeat keeps its device alive this long. */
  readonly timeoutMs: number;
  /** A device going offline stays alive this long more (a quick return causes no transition). */
  readonly graceMs: number;
  /** A user's published state changes at most once per this long. */
  readonly minDwellMs: number;
}

/** A user's published (debounced) state changed. */
export interface Transition {
  readonly userId: string;
  readonly online: boolean;
  /** Last heartbeat of any of the user's devices. */
  readonly lastSeenMs: number;
  /** When the transition was decided (the user's state version: later wins). */
  readonly changedAtMs: number;
}

/** A user's published state, as GetPresence and WatchPresence report it. */
export interface PresenceRecord {
  readonly online: boolean;
  readonly lastSeenMs: number;
  readonly changedAtMs: number;
}

/**
 * PresenceStore: per-device deadlines, the user's published state and an expiry index.
 *
 * Per user: devices with a deadline each; last seen (max heartbeat time); the published state
 * (online / offline) and when it last changed. The user is *actually* online while any device's
 * deadline is after now. The *published* state follows the actual one, except that after a change
 * the next change waits until `minDwellMs` after it (flap damping); until then the user stays in
 * the expiry index at that time. Only published changes are returned as transitions.
 *
 * - `heartbeat(beats, now, t)`: each device's deadline becomes now + timeoutMs (a device coming
 *   back from going offline included), last seen becomes now; returns the transitions it caused
 *   (a user who was offline or unknown goes online, unless damped).
 * - `goingOffline(beats, now, t)`: a known device's deadline becomes min(its deadline, now +
 *   graceMs) and last seen now; an unknown or expired device is ignored. With graceMs 0 the
 *   device is gone at once and the user may go offline in this call.
 * - `read(userIds, now)`: the published state of each user (undefined: never seen, or forgotten),
 *   in order. No side effects.
 * - `sweep(now, limit, t)`: handles at most `limit` users whose index time is <= now (never
 *   scans users who are not due): expired devices are dropped, the published state is brought in
 *   line (or re-scheduled while damped). `more`: more users were due.
 * - `ping()`: resolves when the backend answers (the sweeper's recovery probe).
 *
 * Every operation on one user is atomic, so concurrent heartbeats, sweeps in two processes
 * (a leadership hand-over) or a repeated call publish each transition once.
 * Errors: backend unreachable -> DomainError "Unavailable".
 */
export interface PresenceStore {
  heartbeat(beats: readonly DeviceBeat[], nowMs: number, t: PresenceTimings): Promise<Transition[]>;
  goingOffline(beats: readonly DeviceBeat[], nowMs: number, t: PresenceTimings): Promise<Transition[]>;
  read(userIds: readonly string[], nowMs: number): Promise<(PresenceRecord | undefined)[]>;
  sweep(nowMs: number, limit: number, t: PresenceTimings): Promise<{ transitions: Transition[]; more: boolean }>;
  ping(): Promise<void>;
  close?(): Promise<void>;
}

/**
 * Contacts port: who may learn a user's presence. Read from chat's channels.
 * - `contactsOf(user)`: members of the user's direct channels and of groups with at most the
 *   fan-out size of members (the user excluded): they are told of transitions.
 * - `channelsOf(user)`: ids of the channels the user is a member of now (any size).
 */
export interface Contacts {
  contactsOf(userId: string): Promise<ReadonlySet<string>>;
  channelsOf(userId: string): Promise<ReadonlySet<string>>;
}
