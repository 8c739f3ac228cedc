// The shortener over gRPC on the cluster engine: real Cassandra (per-file keyspace), ZooKeeper
// (code ranges), NATS (LinkChanged) and Redis.
import { loadConfig } from "../../platform/config.js";
import { openEngine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { dropKeyspace, infra, uniqueKeyspaceName } from "../../testkit/keyspace.js";
import { infraEnv } from "../../testkit/servers/index.js";
import { shortenerSuite } from "./shortener.suite.js";

shortenerSuite("cluster", async () => {
  const keyspace = uniqueKeyspaceName("shortener");
  const env = {
    ...infraEnv(infra()),
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_CODE_KEY: "shortener-int-test-key-0123456789",
  };
  const prev = process.env["SWITCHBOARD_CODE_KEY"];
  process.env["SWITCHBOARD_CODE_KEY"] = env.SWITCHBOARD_CODE_KEY;
  const engine = await openEngine(loadConfig(env), silentLog);
  for (let i = 0; i < 300 && !(await engine.readiness()).ready; i++) await new Promise((r) => setTimeout(r, 100));
  return {
    engine,
    env,
    cleanup: async () => {
      if (prev === undefined) delete process.env["SWITCHBOARD_CODE_KEY"];
      else process.env["SWITCHBOARD_CODE_KEY"] = prev;
      await engine.close();
      await dropKeyspace(keyspace);
    },
  };
});
