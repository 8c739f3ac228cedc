import { describe, expect, it } from "vitest";
import { readRecorded } from "../../../platform/cassandra/migrations.js";
import { DriverCqlSession, type CqlSession } from "../../../platform/cassandra/session.js";
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

  it("two registers that both read before either wrote: never both stay: the cap holds and undone rows are gone", async () => {
    // Holds the first two reads of the partition until both have arrived: the worst interleaving.
    const inner = session();
    let waiting: (() => void)[] = [];
    let held = 0;
    const barrier: CqlSession = {
      keyspace: inner.keyspace,
      execute: async (cql, params, options) => {
        if (/^SELECT device_id/.test(cql) && held < 2) {
          held++;
          await new Promise<void>((r) => {
            waiting.push(r);
            if (waiting.length === 2) {
              for (const w of waiting) w();
              waiting = [];
            }
          });
        }
        return inner.execute(cql, params, options);
      },
      executePage: (...a) => inner.executePage(...a),
      executeLwt: (...a) => inner.executeLwt(...a),
      executeBatch: (...a) => inner.executeBatch(...a),
    };
    const store = new CassandraDeviceStore(barrier);
    await store.ensureSchema();
    const u = `barrier-${Date.now().toString(36)}`;
    const dev = (id: string) => ({ userId: u, deviceId: id, platform: "fcm" as const, token: `t-${id}`, displayName: "" });
    await new CassandraDeviceStore(inner).register(dev("first"), 2, 1_900_000_000_000);
    const [a, b] = await Promise.all([store.register(dev("a"), 2, 1_900_000_000_001), store.register(dev("b"), 2, 1_900_000_000_002)]);
    expect(held).toBe(2);
    // Both wrote past a read that saw room. Whether a re-read already sees the other's write is up to
    // timing: then both undo (full, full); otherwise the first to re-read keeps its row. Either way
    // the cap holds and only undone rows are gone.
    const won = [a.kind === "registered" ? "a" : undefined, b.kind === "registered" ? "b" : undefined].filter((x) => x !== undefined);
    expect(won.length).toBeLessThanOrEqual(1);
    expect((await store.list(u)).map((d) => d.deviceId).sort()).toEqual(["first", ...won].sort());
    // Nothing is left behind: once the winner (if any) is gone, the next register fits.
    for (const id of won) await store.unregister(u, id);
    expect((await store.register(dev("c"), 2, 1_900_000_000_003)).kind).toBe("registered");
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
