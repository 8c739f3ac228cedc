/**
 * Starting a request costs far more than parsing its HEADERS frame (request objects, the
 * handler, its first answer: about a millisecond for a gRPC stream here). One TCP read can
 * hold hundreds of HEADERS frames, all of which Node would otherwise start in one go, so a
 * few clients could keep the event loop busy for seconds while /healthz on a fresh connection
 * waits. This starts at most `perTurn` requests per event-loop turn and queues the rest per
 * remote address, taking them round-robin: a newcomer waits for about one turn, not behind
 * everybody's backlog. Under normal load nothing is queued and requests start at once.
 */
export interface FairAdmission {
  /** Runs `start` now, or later in its address's turn; `cancelled` is checked before a queued start. */
  admit(key: string, start: () => void, cancelled: () => boolean): void;
  /** Requests waiting for their turn. */
  readonly queued: number;
}

export function createFairAdmission(perTurn: number): FairAdmission {
  const queues = new Map<string, { start: () => void; cancelled: () => boolean }[]>();
  let queued = 0;
  let startedThisTurn = 0;
  let turnScheduled = false;

  const nextTurn = (): void => {
    if (turnScheduled) return;
    turnScheduled = true;
    // setImmediate runs after the poll phase: reads from other connections get in between.
    setImmediate(() => {
      turnScheduled = false;
      startedThisTurn = 0;
      drain();
    });
  };

  const drain = (): void => {
    // Map iteration order is insertion order; a key with work left goes to the back.
    while (queued > 0 && startedThisTurn < perTurn) {
      const [key, queue] = queues.entries().next().value as [string, { start: () => void; cancelled: () => boolean }[]];
      const item = queue.shift()!;
      queued -= 1;
      queues.delete(key);
      if (queue.length > 0) queues.set(key, queue);
      if (item.cancelled()) continue;
      startedThisTurn += 1;
      item.start();
    }
    if (queued > 0 || startedThisTurn > 0) nextTurn();
  };

  return {
    admit(key, start, cancelled) {
      if (queued === 0 && startedThisTurn < perTurn) {
        startedThisTurn += 1;
        nextTurn();
        start();
        return;
      }
      let queue = queues.get(key);
      if (!queue) queues.set(key, (queue = []));
      queue.push({ start, cancelled });
      queued += 1;
      nextTurn();
    },
    get queued() {
      return queued;
    },
  };
}
