/**
 * Node parses the HTTP/2 bytes we hand a session synchronously, and each HEADERS frame in them
 * becomes a stream object and a 'stream' event before any budget of ours can refuse it. One
 * event-loop turn can find dozens of connections readable, each with a 64 KB read of hundreds
 * of HEADERS frames: parsing them all in that turn kept the loop busy for 200-450 ms when a
 * flood arrived on many connections at once, and /healthz on a fresh connection waited for it.
 *
 * This hands the HTTP/2 sessions about `bytesPerTurn` bytes per event-loop turn in total,
 * whole socket reads (at most 64 KB each) taken round-robin by remote address, then by
 * connection, and holds the rest with the socket paused (TCP flow control pushes back on the
 * sender). A read is not split: a connection that breaks the protocol in a read (stream 101
 * of 100) is cut in that same pass, before the streams it opened earlier in the read start.
 * Under normal load a turn never fills its budget and bytes pass straight through.
 */
export interface IntakeLane {
  /** Bytes read from the socket: delivered now within the turn's budget, the rest queued. */
  offer(chunk: Buffer): void;
  /** The socket ended: `onEnd` runs once every queued byte was delivered. */
  end(): void;
  /** The connection is gone: queued bytes are dropped. */
  close(): void;
  /** Bytes waiting for a later turn. */
  readonly pending: number;
}

export interface LaneHooks {
  deliver(chunk: Buffer): void;
  /** Bytes are queued: stop reading the socket. */
  hold(): void;
  /** The queue is empty again: reading may resume. */
  release(): void;
  onEnd(): void;
}

export interface FairIntake {
  lane(key: string, hooks: LaneHooks): IntakeLane;
}

class Lane implements IntakeLane {
  readonly queue: Buffer[] = [];
  pending = 0;
  closed = false;
  ended = false;

  constructor(
    readonly key: string,
    readonly hooks: LaneHooks,
    private readonly intake: Intake,
  ) {}

  offer(chunk: Buffer): void {
    if (this.closed || chunk.length === 0) return;
    if (this.pending === 0 && this.intake.take(chunk.length)) {
      this.hooks.deliver(chunk);
      return;
    }
    const wasEmpty = this.pending === 0;
    this.queue.push(chunk);
    this.pending += chunk.length;
    if (wasEmpty) {
      this.hooks.hold();
      this.intake.enqueue(this);
    }
  }

  end(): void {
    if (this.closed || this.ended) return;
    this.ended = true;
    if (this.pending === 0) this.hooks.onEnd();
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.pending = 0;
  }

  /** Delivers the oldest queued read; returns its size. */
  drainOne(): number {
    const chunk = this.queue.shift();
    if (!chunk) return 0;
    this.pending -= chunk.length;
    this.hooks.deliver(chunk);
    if (!this.closed && this.pending === 0) {
      if (this.ended) this.hooks.onEnd();
      else this.hooks.release();
    }
    return chunk.length;
  }
}

class Intake implements FairIntake {
  /** Lanes with queued bytes, by address; Map order is the round-robin order. */
  private readonly waiting = new Map<string, Lane[]>();
  private usedThisTurn = 0;
  private turnScheduled = false;

  constructor(private readonly bytesPerTurn: number) {}

  lane(key: string, hooks: LaneHooks): IntakeLane {
    return new Lane(key, hooks, this);
  }

  /**
   * Charges a read to this turn's budget, or says it must wait (when the budget is spent or
   * others are already waiting). A read is never split: one read can overshoot the budget.
   */
  take(bytes: number): boolean {
    if (this.waiting.size > 0 || this.usedThisTurn >= this.bytesPerTurn) return false;
    this.usedThisTurn += bytes;
    this.nextTurn();
    return true;
  }

  enqueue(lane: Lane): void {
    let lanes = this.waiting.get(lane.key);
    if (!lanes) this.waiting.set(lane.key, (lanes = []));
    lanes.push(lane);
    this.nextTurn();
  }

  private nextTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    // setImmediate runs after the poll phase: other connections' reads (and a newcomer's
    // accept) get in between two turns' worth of parsing.
    setImmediate(() => {
      this.turnScheduled = false;
      this.usedThisTurn = 0;
      this.drain();
    });
  }

  private drain(): void {
    while (this.waiting.size > 0 && this.usedThisTurn < this.bytesPerTurn) {
      const [key, lanes] = this.waiting.entries().next().value as [string, Lane[]];
      this.waiting.delete(key);
      const lane = lanes.shift()!;
      if (!lane.closed) {
        this.usedThisTurn += lane.drainOne();
        if (!lane.closed && lane.pending > 0) lanes.push(lane);
      }
      // An address with lanes left goes to the back (delete + set).
      if (lanes.length > 0) {
        const current = this.waiting.get(key);
        this.waiting.set(key, current ? [...current, ...lanes] : lanes);
      }
    }
    if (this.waiting.size > 0 || this.usedThisTurn > 0) this.nextTurn();
  }
}

export function createFairIntake(bytesPerTurn: number): FairIntake {
  return new Intake(bytesPerTurn);
}
