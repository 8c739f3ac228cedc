import { describe, expect, it } from "vitest";
import { readRecorded } from "../../../platform/cassandra/migrations.js";
import { DriverCqlSession } from "../../../platform/cassandra/session.js";
import { useKeyspace } from "../../../testkit/keyspace.js";
import { deviceStoreConformance } from "../device-store.conformance.js";
import { CassandraDeviceStore } from "./cassandra-device-store.js";

const ks = useKeyspace("push_devices");
const session = (): DriverCqlSession => new DriverCqlSession(ks.client, ks.keyspace);

describe("CassandraDeviceStore against the run's real Cassandra", () => {
  deviceStoreConformance("cassandra", async () => new CassandraDeviceStore(session()));

  it("migrated the push scope (version 1)", async () => {
    await new CassandraDeviceStore(session()).list("nobody");
    const recorded = await readRecorded(session(), "push");
    expect([...recorded.entries()].map(([v, r]) => [v, r.name])).toEqual([[1, "create_push_devices"]]);
  });

  it("racing stores (one per process) on one user never leave more than the cap", async () => {
    const stores = Array.from({ length: 4 }, () => new CassandraDeviceStore(new DriverCqlSession(ks.client, ks.keyspace)));
    const u = `race-${Date.now().toString(36)}`;
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, (_, i) => stores[i % 4]!.register({ userId: u, deviceId: `d${i}`, platform: "fcm", token: `t${i}`, displayName: "" }, 3, 1_900_000_000_000 + i)),
    );
    const stored = (await stores[0]!.list(u)).map((d) => d.deviceId).sort();
    expect(stored.length).toBeLessThanOrEqual(3);
    expect(stored).toEqual(outcomes.flatMap((o) => (o.kind === "registered" ? [o.device.deviceId] : [])).sort());
  });
});
