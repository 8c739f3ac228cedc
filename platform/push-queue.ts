/**
 * An async iterable fed by push(): the request side of a streaming call whose writer never waits
 * (each item small, and how many there can be bounded by the caller). Items pushed after end()
 * are dropped.
 */
export class PushQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private wake: (() => void) | undefined;
  private done = false;

  /** Items pushed and not read yet. */
  get pending(): number {
    return this.items.length;
  }

  push(item: T): void {
    if (this.done) return;
    this.items.push(item);
    this.wake?.();
  }

  /** The iteration ends once what was pushed before has been read. */
  end(): void {
    this.done = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      if (this.items.length > 0) {
        const batch = this.items;
        this.items = [];
        yield* batch;
        continue;
      }
      if (this.done) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}
