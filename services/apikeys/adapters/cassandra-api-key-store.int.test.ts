import { describe, expect, it } from "vitest";
import { readRecorded } from "../../../platform/cassandra/migrations.js";
import { DriverCqlSession } from "../../../platform/cassandra/session.js";
import { useKeyspace } from "../../../testkit/keyspace.js";
import { apiKeyStoreConformance } from "../api-key-store.conformance.js";
import { CassandraApiKeyStore } from "./cassandra-api-key-store.js";

const ks = useKeyspace("apikeys_store");

describe("CassandraApiKeyStore against the run's real Cassandra", () => {
  apiKeyStoreConformance(async () => ({
    store: new CassandraApiKeyStore(new DriverCqlSession(ks.client, ks.keyspace)),
    cleanup: async () => {},
  }));

  it("migrated the apikeys scope (version 1) in this keyspace", async () => {
    const recorded = await readRecorded(new DriverCqlSession(ks.client, ks.keyspace), "apikeys");
    expect([...recorded.keys()]).toEqual([1]);
    expect(recorded.get(1)?.name).toBe("create_api_keys");
  });
});
