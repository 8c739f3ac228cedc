import { describe, expect, it } from "vitest";
import { infra, useKeyspace } from "../../../testkit/keyspace.js";
import { DriverCqlSession } from "../../../platform/cassandra/session.js";
import { randomUUID } from "node:crypto";
import { readRecorded, runMigrations } from "../../../platform/cassandra/migrations.js";
import { linkMigrations } from "../migrations.js";
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

  it("migrated the links scope (versions 1-4) in this keyspace", async () => {
    const recorded = await readRecorded(new DriverCqlSession(ks.client, ks.keyspace), "links");
    expect([...recorded.keys()]).toEqual([1, 2, 3, 4]);
    expect(recorded.get(1)?.name).toBe("create_links");
    expect(recorded.get(3)?.name).toBe("links_by_owner_and_idempotency");
    expect(recorded.get(4)?.name).toBe("link_aliases_case_insensitive");
  });

  it("re-running the migrations is a no-op (idempotent)", async () => {
    const session = new DriverCqlSession(ks.client, ks.keyspace);
    const r = await runMigrations(session, linkMigrations);
    expect(r.applied).toEqual([]);
    expect(r.alreadyApplied).toEqual([1, 2, 3, 4]);
    // The new migration's statements themselves survive a second run (a runner dying before recording it).
    for (const cql of linkMigrations.migrations.find((m) => m.version === 4)!.statements) await ks.client.execute(cql);
  });

  it("a stale case claim (its link gone without releasing it) is taken over; a live one is not", async () => {
    const store = new CassandraLinkStore(new DriverCqlSession(ks.client, ks.keyspace));
    const suffix = randomUUID().slice(0, 8);
    const base = { longUrl: "https://example.com/", ownerId: "u", createdAt: new Date("2025-01-01T00:00:00.000Z"), redirectType: 302 as const };
    // As left by a crash between deleting "Stale-…" and releasing its claim.
    await ks.client.execute("INSERT INTO link_aliases (folded, code, created_at) VALUES (?, ?, ?)", [`stale-${suffix}`, `Stale-${suffix}`, base.createdAt], { prepare: true });
    expect(await store.insertIfAbsent({ ...base, code: `stale-${suffix}` })).toBe(true);
    const claim = await ks.client.execute("SELECT code FROM link_aliases WHERE folded = ?", [`stale-${suffix}`], { prepare: true });
    expect(claim.first()?.["code"]).toBe(`stale-${suffix}`);
    expect(await store.insertIfAbsent({ ...base, code: `STALE-${suffix}` })).toBe(false);
    expect(await store.get(`STALE-${suffix}`)).toBeUndefined();
  });
});
