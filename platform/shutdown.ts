/**
 * Process signal handling: the first SIGTERM/SIGINT logs a line and runs `fn` (e.g. a server's
 * graceful shutdown) once, then exits 0 (1 if `fn` failed); a second signal while that runs
 * logs and exits 1 at once.
 */
import type { Logger } from "pino";

export interface ShutdownSignalOptions {
  readonly log?: Logger;
  /** Defaults to process.exit; tests pass a spy. */
  readonly exit?: (code: number) => void;
  readonly signals?: readonly NodeJS.Signals[];
}

/** Installs the handlers; returns a function that removes them. */
export function onShutdownSignals(
  fn: (signal: NodeJS.Signals) => Promise<void> | void,
  options: ShutdownSignalOptions = {},
): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const signals = options.signals ?? (["SIGTERM", "SIGINT"] as const);
  let running = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (running) {
      options.log?.warn({ signal }, "second signal received; exiting now");
      exit(1);
      return;
    }
    running = true;
    options.log?.info({ signal }, "signal received; shutting down gracefully");
    Promise.resolve()
      .then(() => fn(signal))
      .then(
        () => {
          options.log?.info({ signal }, "shutdown complete");
          exit(0);
        },
        (err: unknown) => {
          options.log?.error({ err, signal }, "shutdown failed");
          exit(1);
        },
      );
  };
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}
