import { describe, expect, it } from "vitest";
import { isDomainError } from "../errors.js";
import { migrationChecksum, planMigrations, validateMigrationSet, type MigrationSet } from "./migrations.js";

const set: MigrationSet = {
  scope: "demo",
  migrations: [
    { version: 1, name: "one", statements: ["CREATE TABLE IF NOT EXISTS a (k int PRIMARY KEY)"] },
    { version: 2, name: "two", statements: ["ALTER TABLE a ADD v text"] },
  ],
};

describe("migration planning", () => {
  it("checksum ignores whitespace layout but not content or name", () => {
    const m = set.migrations[0]!;
    expect(migrationChecksum({ ...m, statements: ["  CREATE TABLE IF NOT EXISTS a\n   (k int PRIMARY KEY) "] })).toBe(migrationChecksum(m));
    expect(migrationChecksum({ ...m, statements: ["CREATE TABLE IF NOT EXISTS a (k bigint PRIMARY KEY)"] })).not.toBe(migrationChecksum(m));
    expect(migrationChecksum({ ...m, name: "uno" })).not.toBe(migrationChecksum(m));
  });

  it("nothing recorded -> everything pending, in order", () => {
    expect(planMigrations(set, new Map()).pending.map((m) => m.version)).toEqual([1, 2]);
  });

  it("recorded with matching checksum -> only the rest pending; unknown newer versions are ignored", () => {
    const rec = new Map([
      [1, { name: "one", checksum: migrationChecksum(set.migrations[0]!) }],
      [7, { name: "future", checksum: "x" }],
    ]);
    const plan = planMigrations(set, rec);
    expect(plan.pending.map((m) => m.version)).toEqual([2]);
    expect(plan.alreadyApplied).toEqual([1]);
  });

  it("a changed applied migration is a FailedPrecondition naming it", () => {
    const rec = new Map([[1, { name: "one", checksum: "0".repeat(64) }]]);
    try {
      planMigrations(set, rec);
      expect.unreachable();
    } catch (e) {
      expect(isDomainError(e) && e.kind).toBe("FailedPrecondition");
      expect(String(e)).toMatch(/demo v1 \(one\) was changed/);
    }
  });

  it("validates the set", () => {
    expect(() => validateMigrationSet(set)).not.toThrow();
    const bad = (m: MigrationSet) => () => validateMigrationSet(m);
    expect(bad({ scope: "demo", migrations: [set.migrations[1]!, set.migrations[0]!] })).toThrow(/version 1/);
    expect(bad({ scope: "Demo", migrations: [] })).toThrow(/scope/);
    expect(bad({ scope: "demo", migrations: [{ version: 1, name: "x", statements: [] }] })).toThrow(/empty/);
  });
});
