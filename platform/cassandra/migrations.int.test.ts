import { describe, expect, it } from "vitest";
import { infra, useKeyspace } from "../../testkit/keyspace.js";
import { isDomainError } from "../errors.js";
import { readRecorded, runMigrations, type MigrationSet } from "./migrations.js";
import { DriverCqlSession } from "./session.js";

const ks = useKeyspace("migrations");

const demo = (scope: string): MigrationSet => ({
  scope,
  migrations: [
    { version: 1, name: "create_t", statements: [`CREATE TABLE IF NOT EXISTS ${scope}_t (k int PRIMARY KEY, v text)`] },
    { version: 2, name: "add_col", statements: [`ALTER TABLE ${scope}_t ADD w int`] },
  ],
});

describe("runMigrations against the run's real Cassandra", () => {
  const session = () => new DriverCqlSession(ks.client, ks.keyspace);

  it("talks to a real Cassandra", async () => {
    const rs = await ks.client.execute("SELECT release_version FROM system.local");
    console.log(`migrations.int: Cassandra ${String(rs.first()?.["release_version"])} at ${infra().cassandra.contactPoint}`);
    expect(String(rs.first()?.["release_version"])).toBe(infra().cassandra.version);
  });

  it("applies in order, then a second run is a no-op", async () => {
    const s = session();
    const first = await runMigrations(s, demo("twice"));
    expect(first.applied).toEqual([1, 2]);
    const cols = await ks.client.execute(
      "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
      [ks.keyspace, "twice_t"],
    );
    expect(cols.rows.map((r) => String(r["column_name"])).sort()).toEqual(["k", "v", "w"]);
    const second = await runMigrations(s, demo("twice"));
    expect(second).toEqual({ applied: [], alreadyApplied: [1, 2] });
    const rec = await readRecorded(s, "twice");
    expect([...rec.keys()]).toEqual([1, 2]);
  });

  it("concurrent runners apply each migration exactly once", async () => {
    // ALTER ... ADD fails when the column exists, so a double apply would make a runner throw.
    const runs = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        runMigrations(new DriverCqlSession(ks.client, ks.keyspace), demo("race"), { owner: `runner-${i}`, pollMs: 100 }),
      ),
    );
    const appliedBy = runs.flatMap((r) => r.applied);
    expect(appliedBy.sort()).toEqual([1, 2]);
    expect(runs.filter((r) => r.applied.length > 0)).toHaveLength(1);
    const rows = await ks.client.execute("SELECT owner FROM schema_migration_locks WHERE scope = 'race'");
    expect(rows.rowLength).toBe(0); // lock released
  });

  it("detects a changed checksum of an applied migration", async () => {
    const s = session();
    await runMigrations(s, demo("changed"));
    const edited = demo("changed");
    const tampered: MigrationSet = {
      scope: edited.scope,
      migrations: [
        { ...edited.migrations[0]!, statements: ["CREATE TABLE IF NOT EXISTS changed_t (k bigint PRIMARY KEY, v text)"] },
        edited.migrations[1]!,
      ],
    };
    const err = await runMigrations(s, tampered).then(() => undefined, (e: unknown) => e);
    expect(isDomainError(err) && err.kind).toBe("FailedPrecondition");
    expect(String(err)).toMatch(/changed v1 \(create_t\) was changed after it was applied/);
  });

  it("appending a migration applies only the new one", async () => {
    const s = session();
    await runMigrations(s, demo("grow"));
    const grown = demo("grow");
    const more: MigrationSet = {
      scope: "grow",
      migrations: [...grown.migrations, { version: 3, name: "add_x", statements: ["ALTER TABLE grow_t ADD x text"] }],
    };
    expect((await runMigrations(s, more)).applied).toEqual([3]);
  });
});
