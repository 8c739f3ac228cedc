/**
 * The logger shape engines need. pino's Logger satisfies it structurally, so callers pass the
 * process logger (platform/logging.ts) and tests pass `silentLog`.
 */
export interface EngineLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): EngineLog;
}

export const silentLog: EngineLog = {
  info: () => {},
  warn: () => {},
  error: () => {},
  debug: () => {},
  child: () => silentLog,
};
