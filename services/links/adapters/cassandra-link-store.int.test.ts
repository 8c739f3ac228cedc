import { describe, expect, it } from "vitest";
import { infra, useKeyspace } from "../../../testkit/keyspace.js";
import { DriverCqlSession } from "../../../platform/cassandra/session.js";
import { readRecorded } from "../../../platform/cassandra/migrations.js";
import { linkStoreConformance } from "../link-store.conformance.js";
import { CassandraLinkStore } from "./cassandra-link-store.js";

const ks = useKeyspace("links_store");

describe("CassandraLinkStore against the run's real Cassandra", () => {
  it("talks to a real Cassandra", async () => {
    const rs = await ks.client.execute("SELECT release_version FROM system.local");
    const v = String(rs.first()?.["release_version"]);
    console.log(`cassandra-link-store.int: Cassandra ${v} at ${infra().cassandra.contactPoint}, keyspace ${ks.keyspace}`);
    expect(v).toBe(infra().cassandra.version);
  });

  linkStoreConformance(async () => {
    const store = new CassandraLinkStore(new DriverCqlSession(ks.client, ks.keyspace));
    return { store, cleanup: async () => {} };
  });

  it("migrated the links scope (versions 1-3) in this keyspace", async () => {
    const recorded = await readRecorded(new DriverCqlSession(ks.client, ks.keyspace), "links");
    expect([...recorded.keys()]).toEqual([1, 2, 3]);
    expect(recorded.get(1)?.name).toBe("create_links");
    expect(recorded.get(3)?.name).toBe("links_by_owner_and_idempotency");
  });
});
