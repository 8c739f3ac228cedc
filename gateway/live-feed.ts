/**
 * A live stream's responses as the subscribe door (gateway/subscribe-door.ts) pulls them: no
 * generator, promise or abort signal held per idle stream. The door takes what is there while
 * the client's connection accepts more, and is woken when there is more or the stream ended.
 */
export interface LiveFeed<T> {
  /**
   * The next response, or undefined when none is waiting: then `onReady`'s callback runs once
   * there is one or the feed has ended.
   */
  take(): T | undefined;
  /** Set once the feed has ended (error undefined: a clean end); take() then returns nothing more. */
  readonly ended: { readonly error: unknown } | undefined;
  onReady(wake: () => void): void;
  /** The client left: stop the upstream. No ready call follows. */
  close(): void;
}

/** A feed as an async iterable that stops (quietly, closing the feed) when `signal` aborts. */
export async function* iterateFeed<T>(feed: LiveFeed<T>, signal?: AbortSignal): AsyncGenerator<T> {
  // An async generator waiting in an await cannot be returned from: closing the feed wakes it.
  let wake: (() => void) | undefined;
  const leave = (): void => {
    feed.close();
    wake?.();
  };
  signal?.addEventListener("abort", leave, { once: true });
  if (signal?.aborted) leave();
  try {
    for (;;) {
      const value = feed.take();
      if (value !== undefined) {
        yield value;
        continue;
      }
      const ended = feed.ended;
      if (ended) {
        if (ended.error !== undefined) throw ended.error;
        return;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        feed.onReady(resolve);
      });
    }
  } finally {
    signal?.removeEventListener("abort", leave);
    feed.close();
  }
}

/**
 * A feed over an async iterable (a forwarded call that is not relayed: the in-process hop, a
 * Subscribe RPC): one `next()` in flight at a time, the next one only once the value was taken,
 * so the upstream's own flow control still applies.
 */
export function feedFromIterable<T>(start: (signal: AbortSignal) => AsyncIterable<T>): LiveFeed<T> {
  const abort = new AbortController();
  const it = start(abort.signal)[Symbol.asyncIterator]();
  let value: T | undefined;
  let ended: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  let closed = false;
  const pull = (): void => {
    it.next().then(
      (r) => {
        if (closed) return;
        if (r.done) ended = { error: undefined };
        else value = r.value;
        wake?.();
      },
      (e: unknown) => {
        if (closed) return;
        ended = { error: e };
        wake?.();
      },
    );
  };
  pull();
  return {
    take() {
      if (value === undefined) return undefined;
      const v = value;
      value = undefined;
      pull();
      return v;
    },
    get ended() {
      return value === undefined ? ended : undefined;
    },
    onReady(w) {
      wake = w;
    },
    close() {
      if (closed) return;
      closed = true;
      abort.abort();
      void it.return?.(undefined)?.catch(() => {});
    },
  };
}
