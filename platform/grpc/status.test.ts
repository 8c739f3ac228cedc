import { describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainError } from "../errors.js";
import { httpStatusFor, retryAfterMsOf, toConnectError } from "./status.js";

describe("status mapping", () => {
  it("maps codes to HTTP statuses", () => {
    expect([Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.ResourceExhausted, Code.Unavailable, Code.Internal].map(httpStatusFor)).toEqual([400, 404, 412, 429, 503, 500]);
  });
  it("DomainError -> code + message + retry hint; unknown -> generic INTERNAL", () => {
    const e = toConnectError(new DomainError("ResourceExhausted", "too many", { retryAfterMs: 250 }));
    expect([e.code, e.rawMessage, retryAfterMsOf(e), e.metadata.get("retry-after")]).toEqual([Code.ResourceExhausted, "too many", 250, "1"]);
    const i = toConnectError(new Error("secret"), undefined, "r9");
    expect([i.code, i.rawMessage]).toEqual([Code.Internal, "internal error (request id r9)"]);
    const c = new ConnectError("x", Code.NotFound);
    expect(toConnectError(c)).toBe(c);
  });
});
