/**
 * The key of the short-code permutation: env SWITCHBOARD_CODE_KEY (at least 16 characters).
 * Changing it changes every code mapping: keep it fixed for the life of a deployment.
 * Unset in the memory engine: a fixed, public development key is used and a warning logged.
 * Unset in the cluster engine, or too short anywhere: an error naming the variable.
 */
import { ConfigError } from "../../platform/config.js";
import type { EngineLog } from "../../platform/engines/log.js";

export const CODE_KEY_ENV = "SWITCHBOARD_CODE_KEY";
export const DEV_CODE_KEY = "switchboard-dev-code-key-NOT-FOR-PRODUCTION";

export function loadCodeKey(
  engine: "memory" | "cluster",
  log?: Pick<EngineLog, "warn">,
  env: Readonly<Record<string, string | undefined>> = process.env,
): string {
  const v = env[CODE_KEY_ENV]?.trim();
  if (!v) {
    if (engine === "memory") {
      log?.warn({ variable: CODE_KEY_ENV }, `${CODE_KEY_ENV} is not set: using the fixed development key (codes are predictable)`);
      return DEV_CODE_KEY;
    }
    throw new ConfigError(CODE_KEY_ENV, "is required with the cluster engine (at least 16 characters)");
  }
  if (v.length < 16) throw new ConfigError(CODE_KEY_ENV, `must be at least 16 characters (got ${v.length})`);
  return v;
}
