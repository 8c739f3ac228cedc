/**
 * Operator commands for gateway credentials.
 *
 *   switchboard dev-token <user> [--ttl <seconds>]
 *     Prints an HS256 JWT for <user> (sub), signed with SWITCHBOARD_JWT_HS256_SECRET or, on the
 *     memory engine without one, the built-in dev secret (a warning says so on stderr).
 *     Uses SWITCHBOARD_JWT_ISSUER / _AUDIENCE when set. Default lifetime 24 h, capped at
 *     SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS; it never mints a token the gateway would refuse.
 *   switchboard apikey create --owner <user> [--name <label>]
 *     Issues an API key for <user> and prints it ONCE (only its SHA-256 is stored).
 *   switchboard apikey revoke <id>
 *   switchboard apikey list --owner <user>
 *     API keys live in Cassandra: these need the cluster engine (the memory engine keeps keys
 *     inside the running process, where no other command can reach them).
 */
import { ConfigError, type Config } from "../platform/config.js";
import { CassandraConnector } from "../platform/engines/cluster/cassandra.js";
import { readJwtSettings, type Env } from "../gateway/auth/config.js";
import { signHs256 } from "../gateway/auth/jwt.js";
import { isValidUserId, USER_ID_RULE } from "../platform/user-id.js";
import { CassandraApiKeyStore } from "../services/apikeys/adapters/cassandra-api-key-store.js";
import { issueApiKey } from "../services/apikeys/service.js";

export interface CommandIo {
  out(line: string): void;
  err(line: string): void;
}

export class UsageError extends Error {}

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith("--")) throw new UsageError(`${name} needs a value`);
  return v;
}

/** Returns the token; also writes it (and any dev-secret warning) to io. */
export function devTokenCommand(args: readonly string[], config: Pick<Config, "engine">, env: Env, io: CommandIo, nowSeconds = Math.floor(Date.now() / 1000)): string {
  const user = args[0];
  if (!user || user.startsWith("--")) throw new UsageError("usage: switchboard dev-token <user> [--ttl <seconds>]");
  if (!isValidUserId(user)) throw new UsageError(`user must be a valid user id: ${USER_ID_RULE}`);
  const jwt = readJwtSettings(env, config.engine);
  const ttlText = flag(args, "--ttl") ?? String(Math.min(86_400, jwt.maxLifetimeSeconds));
  if (!/^\d+$/.test(ttlText) || Number(ttlText) < 1) throw new UsageError("--ttl must be a whole number of seconds");
  if (Number(ttlText) > jwt.maxLifetimeSeconds) {
    throw new UsageError(`--ttl must be at most ${jwt.maxLifetimeSeconds} seconds: the gateway refuses longer-lived tokens (SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS)`);
  }
  if (jwt.hs256Secret === undefined) {
    throw new ConfigError("SWITCHBOARD_JWT_HS256_SECRET", "is needed to sign tokens (SWITCHBOARD_JWKS_URL only verifies; get tokens from your issuer)");
  }
  if (jwt.devSecret) io.err("switchboard dev-token: WARNING: signed with the built-in DEV secret; the memory-engine gateway accepts it, nothing real should");
  const claims: Record<string, unknown> = { sub: user, iat: nowSeconds, exp: nowSeconds + Number(ttlText) };
  if (jwt.issuer !== undefined) claims["iss"] = jwt.issuer;
  if (jwt.audience !== undefined) claims["aud"] = jwt.audience;
  const token = signHs256(claims, jwt.hs256Secret);
  io.out(token);
  return token;
}

export async function apiKeyCommand(args: readonly string[], config: Config, io: CommandIo): Promise<void> {
  const sub = args[0];
  if (sub !== "create" && sub !== "revoke" && sub !== "list") {
    throw new UsageError("usage: switchboard apikey create --owner <user> [--name <label>] | revoke <id> | list --owner <user>");
  }
  if (config.engine !== "cluster") {
    throw new UsageError(
      "switchboard apikey: API keys are stored in Cassandra; run with SWITCHBOARD_ENGINE=cluster (on the memory engine use `switchboard dev-token <user>`)",
    );
  }
  const c = config.cassandra;
  const cql = new CassandraConnector({
    contactPoints: c.contactPoints,
    localDataCenter: c.localDataCenter,
    keyspace: c.keyspace,
    replicationFactor: c.replicationFactor,
    flavor: c.flavor,
  });
  try {
    const connected = await Promise.race([cql.whenConnected().then(() => true), sleep(30_000).then(() => false)]);
    if (!connected) throw new Error(`cannot reach Cassandra: ${cql.status().detail}`);
    const store = new CassandraApiKeyStore(cql);
    if (sub === "create") {
      const owner = flag(args, "--owner");
      if (!owner) throw new UsageError("usage: switchboard apikey create --owner <user> [--name <label>]");
      if (!isValidUserId(owner)) throw new UsageError(`--owner must be a valid user id: ${USER_ID_RULE}`);
      const issued = await issueApiKey(store, owner, flag(args, "--name") ?? "");
      io.out(issued.key);
      io.err(`switchboard apikey: created key ${issued.record.id} for ${owner}; this is the only time the key is shown`);
    } else if (sub === "revoke") {
      const id = args[1];
      if (!id) throw new UsageError("usage: switchboard apikey revoke <id>");
      if (!(await store.revoke(id, new Date()))) throw new UsageError(`switchboard apikey: no key with id ${id}`);
      io.out(`revoked ${id}`);
    } else {
      const owner = flag(args, "--owner");
      if (!owner) throw new UsageError("usage: switchboard apikey list --owner <user>");
      for (const r of await store.listByOwner(owner)) {
        io.out(`${r.id}\t${r.createdAt.toISOString()}\t${r.revokedAt ? `revoked ${r.revokedAt.toISOString()}` : "active"}\t${r.name}`);
      }
    }
  } finally {
    await cql.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
