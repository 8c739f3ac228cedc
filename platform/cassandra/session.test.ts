import cassandra from "cassandra-driver";
import { describe, expect, it } from "vitest";
import { appliedOf, DriverCqlSession, mapCqlError } from "./session.js";

describe("CQL session helpers", () => {
  it("appliedOf reads only [applied] (Scylla and Cassandra return different other columns)", () => {
    expect(appliedOf([{ "[applied]": true }])).toBe(true);
    expect(appliedOf([{ "[applied]": false, code: "x", long_url: "y" }])).toBe(false);
    expect(() => appliedOf([])).toThrow();
  });
  it("maps driver errors: no host / timeouts -> Unavailable, bad CQL -> Internal", () => {
    const nh = new cassandra.errors.NoHostAvailableError({});
    expect(mapCqlError(nh, "SELECT 1").kind).toBe("Unavailable");
    const syntax = new cassandra.errors.ResponseError(cassandra.types.responseErrorCodes.syntaxError, "bad");
    expect(mapCqlError(syntax, "SELEC 1").kind).toBe("Internal");
    const wt = new cassandra.errors.ResponseError(cassandra.types.responseErrorCodes.writeTimeout, "wt");
    expect(mapCqlError(wt, "INSERT").kind).toBe("Unavailable");
  });
  it("timeoutMs becomes the driver's per-request readTimeout (statements and batches); absent, the client's default", async () => {
    const seen: Record<string, unknown>[] = [];
    const client = {
      execute: async (_q: string, _p: unknown[], o: Record<string, unknown>) => (seen.push(o), { rows: [] }),
      batch: async (_q: unknown[], o: Record<string, unknown>) => void seen.push(o),
    } as unknown as cassandra.Client;
    const s = new DriverCqlSession(client, "ks");
    await s.execute("SELECT 1", [], { timeoutMs: 250 });
    await s.executeBatch([{ cql: "INSERT", params: [] }], { timeoutMs: 300 });
    await s.execute("SELECT 1");
    expect(seen.map((o) => o["readTimeout"])).toEqual([250, 300, undefined]);
  });
});
