import cassandra from "cassandra-driver";
import { describe, expect, it } from "vitest";
import { appliedOf, mapCqlError } from "./session.js";

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
});
