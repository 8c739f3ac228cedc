import { describe, expect, it } from "vitest";
import { keyspaceDdl, quoteIdent } from "./keyspace.js";

describe("keyspaceDdl", () => {
  it("Cassandra: plain SimpleStrategy, no tablets clause", () => {
    const ddl = keyspaceDdl({ keyspace: "switchboard", flavor: "cassandra", replicationFactor: 1 });
    expect(ddl).toBe(
      `CREATE KEYSPACE IF NOT EXISTS "switchboard" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = true`,
    );
    expect(ddl).not.toMatch(/tablets/);
  });
  it("ScyllaDB: tablets disabled", () => {
    const ddl = keyspaceDdl({ keyspace: "sb", flavor: "scylla", replicationFactor: 3, dataCenter: "dc1" });
    expect(ddl).toBe(
      `CREATE KEYSPACE IF NOT EXISTS "sb" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3} AND durable_writes = true AND tablets = {'enabled': false}`,
    );
  });
  it("rejects bad names and factors", () => {
    expect(() => quoteIdent("Bad-Name")).toThrow();
    expect(() => keyspaceDdl({ keyspace: "ok", flavor: "cassandra", replicationFactor: 0 })).toThrow();
  });
});
