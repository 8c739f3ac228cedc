/**
 * Acts on each item at a random moment of `windowMs`, handing it a retry hint of a random share of
 * up to a second: the clients of a process that is stopping (its streams ended one by one) then
 * come back spread out, not in one wave. Resolves once every item was acted on.
 */
export function atRandomMoments<T>(items: Iterable<T>, windowMs: number, act: (item: T, retryAfterMs: number) => void): Promise<void> {
  return Promise.all(
    [...items].map(
      (item) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            act(item, Math.floor(Math.random() * Math.min(windowMs, 1_000)));
            resolve();
          }, Math.floor(Math.random() * windowMs));
          t.unref();
        }),
    ),
  ).then(() => undefined);
}
