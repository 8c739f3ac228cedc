import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { childForCall, createLogger, requestIdFrom, safeHeaders } from "./logging.js";

describe("logging", () => {
  it("redacts authorization/cookie and binds call fields", () => {
    const out: string[] = [];
    const destination = new Writable({ write: (c: Buffer, _e, cb) => (out.push(c.toString()), cb()) });
    const log = childForCall(createLogger({ name: "t", destination }), { service: "s.S", method: "M", requestId: "r1" });
    log.info({ headers: { authorization: "Bearer secret", cookie: "sid=secret", accept: "x" } }, "hi");
    const line = JSON.parse(out.join("")) as Record<string, unknown>;
    expect(JSON.stringify(line)).not.toContain("secret");
    expect(line).toMatchObject({ service: "s.S", method: "M", requestId: "r1", level: "info", name: "t" });
    expect(safeHeaders(new Headers({ Authorization: "x", a: "b" }))).toEqual({ authorization: "[redacted]", a: "b" });
    expect(requestIdFrom(new Headers({ "x-request-id": "abc" }))).toBe("abc");
    expect(requestIdFrom(new Headers())).toMatch(/^[0-9a-f-]{36}$/);
  });
});
