import { describe, expect, it } from "vitest";
import { combineProbes, type Check, type PartProbe } from "./readiness.js";

const part = (name: string, critical: boolean, ok: boolean): Check => ({
  name,
  kind: critical ? "backend" : "service",
  critical,
  ok,
  detail: ok ? "up" : "down",
});
const probe = (...checks: Check[]): PartProbe => ({ run: async () => checks, failed: (detail) => checks.map((c) => ({ ...c, ok: false, detail })) });

describe("gateway readiness", () => {
  it("a non-critical part down leaves the gateway ready and is named in degraded", async () => {
    const r = await combineProbes([probe(part("cassandra", true, true), part("redis", false, false)), probe(part("presence", false, false))])();
    expect(r.ready).toBe(true);
    expect(r.degraded).toEqual(["redis", "presence"]);
  });

  it("a critical part down makes it not ready; degraded lists only the non-critical ones", async () => {
    const r = await combineProbes([probe(part("cassandra", true, false), part("nats", false, false))])();
    expect(r.ready).toBe(false);
    expect(r.degraded).toEqual(["nats"]);
    expect(r.checks.find((c) => c.name === "cassandra")).toMatchObject({ ok: false, critical: true });
  });

  it("a probe that hangs marks its parts down after the deadline, without its error text", async () => {
    const hung: PartProbe = { run: () => new Promise(() => {}), failed: (detail) => [{ ...part("cassandra", true, false), detail }] };
    const broken: PartProbe = {
      run: async () => {
        throw new Error("connect ECONNREFUSED 127.0.0.1:9042");
      },
      failed: (detail) => [{ ...part("shortener", false, false), detail }],
    };
    const r = await combineProbes([hung, broken], 50)();
    expect(r.ready).toBe(false);
    expect(r.checks).toEqual([
      { ...part("cassandra", true, false), detail: "no answer within 50 ms" },
      { ...part("shortener", false, false), detail: "probe failed" },
    ]);
    expect(JSON.stringify(r)).not.toContain("127.0.0.1");
  });
});
