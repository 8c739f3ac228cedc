// Presence restart on the cluster engine: the second service runs on a new engine (a new
// process's connections and ZooKeeper session); state is in the run's Redis, the sweeper's lock
// in its ZooKeeper (released by the first process on shutdown).
import cassandra from "cassandra-driver";
import { afterAll } from "vitest";
import { loadConfig } from "../../platform/config.js";
import { openClusterEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../../testkit/keyspace.js";
import { TEST_MESH_SECRET } from "../../testkit/mesh-identity.js";
import { waitFor } from "../../testkit/processes.js";
import { infraEnv } from "../../testkit/servers/index.js";
import { presenceRestartSuite, RESTART_ENV } from "./restart.suite.js";

const engines: Engine[] = [];
const config = loadConfig({
  ...infraEnv(infra()),
  ...RESTART_ENV,
  SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
  SWITCHBOARD_CASSANDRA_KEYSPACE: uniqueKeyspaceName("presrestart"),
});
async function open(): Promise<Engine> {
  const e = openClusterEngine(config, silentLog);
  engines.push(e);
  // Cassandra too: contacts come from chat's tables, and a transition is published only with them.
  await waitFor("every backend", async () => ((await e.readiness()).ready ? true : undefined), 60_000);
  return e;
}
afterAll(async () => {
  for (const e of engines) await e.close();
  await dropKeyspace(config.cassandra.keyspace);
});

presenceRestartSuite("cluster", () => ({ config, first: open, second: open }));
