import { describe, expect, it } from "vitest";
import { parseRetryAfter } from "./retry-after.js";

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-12-05T15:00:00Z");
  it("reads delay-seconds and HTTP-dates; a past date is no wait; anything else is no header", () => {
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(["3", "9"], now)).toBe(3_000);
    expect(parseRetryAfter("Sat, 05 Dec 2026 15:01:30 GMT", now)).toBe(90_000);
    expect(parseRetryAfter("Sat, 05 Dec 2026 14:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("-5", now)).toBeUndefined();
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});
