/**
 * The secret the gateway signs identity assertions with and internal services verify them with
 * (platform/identity-assertion.ts). Cluster engine: SWITCHBOARD_MESH_SECRET, the same value in
 * every mesh process, required. Memory engine: every service and the gateway share one process,
 * so a random secret made once per process is enough (and never leaves it).
 */
import { randomBytes, type KeyObject } from "node:crypto";
import { ConfigError, type Config } from "./config.js";
import { meshKey } from "./identity-assertion.js";

let processKey: KeyObject | undefined;

/** Throws ConfigError when the cluster engine has no mesh secret. */
export function meshKeyOf(config: Pick<Config, "engine" | "mesh">): KeyObject {
  if (config.mesh.secret !== undefined) return meshKey(config.mesh.secret);
  if (config.engine === "cluster") {
    throw new ConfigError(
      "SWITCHBOARD_MESH_SECRET",
      "is required on the cluster engine: the same secret of at least 32 bytes in the gateway and every service (e.g. `openssl rand -base64 48`)",
    );
  }
  return (processKey ??= meshKey(randomBytes(32)));
}
