/**
 * One sweeper at a time across every presence process, elected through the Coordinator port:
 * the process whose `registerEphemeral(path)` succeeds sweeps; the others try again every tick
 * (the node disappears when the holder releases it or its session ends: close, crash, expiry).
 * A holder whose session expires stops sweeping until it registers again.
 *
 * No storm of false offline transitions:
 * - A new holder (first start, restart, hand-over) waits one heartbeat interval before its first
 *   sweep: heartbeats that could not be stored while no presence process answered are sent again
 *   within that time, and they refresh the deadlines that lapsed meanwhile.
 * - The same after the store was unreachable: while it fails, the holder only probes it (`ping`),
 *   and sweeps again one interval after it answers.
 * Two sweepers for a moment (a hand-over racing a session expiry) are harmless: every change of a
 * user is atomic in the store, so a transition is decided once.
 */
import type { Coordinator, Registration } from "../../platform/ports/coordinator.js";
import { isDomainError } from "../../platform/errors.js";

export interface SweepLeaderOptions {
  readonly coordinator: Coordinator;
  /** The lock node. */
  readonly path: string;
  /** Written in the lock node (diagnostics). */
  readonly id: string;
  /** Time between ticks (sweeps, or attempts to lead). */
  readonly tickMs: number;
  /** Wait after taking the lead, and after the store answers again, before sweeping. */
  readonly holdMs: number;
  readonly sweep: () => Promise<unknown>;
  readonly ping: () => Promise<void>;
  readonly now?: () => number;
  readonly onError?: (what: string, err: unknown) => void;
  readonly onLeadership?: (leading: boolean) => void;
}

export class SweepLeader {
  private registration: Registration | undefined;
  private holdUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private running: Promise<void> | undefined;
  private readonly offSession: () => void;
  private readonly now: () => number;
  private readonly onError: (what: string, err: unknown) => void;

  constructor(private readonly opts: SweepLeaderOptions) {
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError ?? (() => {});
    this.offSession = opts.coordinator.onSessionState((state) => {
      // The session ended: its ephemeral node is gone, someone else may lead now.
      if (state === "expired" && this.registration) this.lose();
    });
  }

  get leading(): boolean {
    return this.registration !== undefined;
  }

  start(): this {
    this.schedule(0);
    return this;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.offSession();
    await this.running;
    const reg = this.registration;
    this.registration = undefined;
    await reg?.release().catch((e: unknown) => this.onError("release the sweeper lock", e));
  }

  /** One tick (exported for tests through `start`; never overlaps itself). */
  private async tick(): Promise<void> {
    if (!this.registration) {
      if (this.opts.coordinator.sessionState !== "connected") return;
      try {
        this.registration = await this.opts.coordinator.registerEphemeral(this.opts.path, new TextEncoder().encode(this.opts.id));
        if (this.closed) return;
        this.holdUntil = this.now() + this.opts.holdMs;
        this.opts.onLeadership?.(true);
      } catch (e) {
        if (!(isDomainError(e) && e.kind === "AlreadyExists")) this.onError("take the sweeper lock", e);
        return;
      }
    }
    if (this.now() < this.holdUntil) {
      try {
        await this.opts.ping();
      } catch (e) {
        this.holdUntil = this.now() + this.opts.holdMs;
        this.onError("presence store probe", e);
      }
      return;
    }
    try {
      await this.opts.sweep();
    } catch (e) {
      // Deadlines may have lapsed while the store could not be written: wait for heartbeats again.
      this.holdUntil = this.now() + this.opts.holdMs;
      this.onError("sweep", e);
    }
  }

  private lose(): void {
    this.registration = undefined;
    this.opts.onLeadership?.(false);
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule(this.opts.tickMs);
      });
    }, delayMs);
    this.timer.unref?.();
  }
}
