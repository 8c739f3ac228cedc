/** Pure chat rules: cursor codec and settle horizon, validation, roles, ids, page tokens, typing limiter. */
import { describe, expect, it } from "vitest";
import { DomainError } from "../../../platform/errors.js";
import { SNOWFLAKE_EPOCH_MS, SnowflakeGenerator } from "../../tokenrange/snowflake.js";
import type { MemberRecord } from "../ports.js";
import { decodeCursor, encodeCursor, firstIdAt, horizon, idTimeMs, tooOldToWrite } from "./cursor.js";
import { directChannelId, directPairKey, groupChannelIdFor, groupRequestHash } from "./ids.js";
import { decodeChannelPageToken, encodeChannelPageToken } from "./page-token.js";
import { SlidingWindowLimiter } from "./rate-limit.js";
import { canDeleteMessage, canRemove, successorOf } from "./roles.js";
import { codePoints, pageSizeOf, validateClientMessageId, validateDeviceId, validateText } from "./validate.js";

const field = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    expect((e as DomainError).kind).toBe("InvalidArgument");
    return (e as DomainError).details.field;
  }
  return undefined;
};

describe("Sync cursor", () => {
  it("round-trips and is opaque base64url", () => {
    const c = { settled: 123456789012345n, tail: 0x7fff_ffff_ffff_fffen };
    const s = encodeCursor(c);
    expect(s).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(s)).toEqual(c);
  });

  it("refuses anything it did not issue, naming the cursor field", () => {
    const good = encodeCursor({ settled: 1n, tail: 2n });
    const wrongVersion = Buffer.from(good, "base64url");
    wrongVersion[0] = 2;
    const topBit = Buffer.from(good, "base64url");
    topBit[1] = 0x80;
    for (const bad of ["", "!", "AAAA", `${good}A`, good.slice(1), wrongVersion.toString("base64url"), topBit.toString("base64url"), "a".repeat(65)]) {
      expect(field(() => decodeCursor(bad)), bad).toBe("cursor");
    }
  });

  it("the horizon is the first id mintable settle-window ago: ids minted then or earlier are at or below it", () => {
    let t = Date.UTC(2026, 5, 1);
    const gen = new SnowflakeGenerator({ worker: 1023, now: () => t });
    const old = gen.next();
    t += 4_999;
    const young = gen.next();
    t += 1;
    expect(old).toBeGreaterThanOrEqual(horizon(t, 5_000));
    expect(young).toBeGreaterThan(horizon(t, 5_000));
    expect(old).toBeLessThan(horizon(t + 1, 5_000));
    expect(idTimeMs(young)).toBe(t - 1);
    expect(firstIdAt(SNOWFLAKE_EPOCH_MS - 10)).toBe(0n);
  });

  it("an id older than W - T when its write starts must be re-minted", () => {
    const t = Date.UTC(2026, 5, 1);
    const id = firstIdAt(t);
    expect(tooOldToWrite(id, t + 3_000, 5_000, 2_000)).toBe(false);
    expect(tooOldToWrite(id, t + 3_001, 5_000, 2_000)).toBe(true);
  });
});

describe("validation", () => {
  it("counts code points, not UTF-16 units", () => {
    expect(codePoints("a😀b")).toBe(3);
    expect(codePoints("\ud800")).toBe(1);
    expect(() => validateText("😀".repeat(100_000))).not.toThrow();
    expect(field(() => validateText("😀".repeat(100_001)))).toBe("text");
    expect(field(() => validateText(""))).toBe("text");
  });

  it("device ids: 1..64 of [A-Za-z0-9_.:-]", () => {
    expect(validateDeviceId("ios:ABC-1.2_x")).toBe("ios:ABC-1.2_x");
    for (const bad of ["", "a b", "x".repeat(65), "é", "a/b"]) expect(field(() => validateDeviceId(bad)), bad).toBe("device_id");
  });

  it("client message ids: 1..64 printable ASCII", () => {
    expect(validateClientMessageId("3f1c a-b")).toBe("3f1c a-b");
    for (const bad of ["", "x".repeat(65), "tab\t", "ü"]) expect(field(() => validateClientMessageId(bad))).toBe("client_message_id");
  });

  it("page sizes: 0 is the default, otherwise within bounds", () => {
    expect(pageSizeOf(0, "page_size", 50, 200)).toBe(50);
    expect(pageSizeOf(200, "page_size", 50, 200)).toBe(200);
    expect(field(() => pageSizeOf(-1, "page_size", 50, 200))).toBe("page_size");
    expect(field(() => pageSizeOf(201, "page_size", 50, 200))).toBe("page_size");
  });
});

describe("roles", () => {
  const m = (userId: string, joinedId: bigint, role: MemberRecord["role"] = "member"): MemberRecord => ({ userId, role, joinedAt: new Date(0), joinedId });
  it("successor is the smallest joinedId other than the leaver", () => {
    expect(successorOf([m("owner", 1n, "owner"), m("late", 9n), m("early", 3n)], "owner")?.userId).toBe("early");
    expect(successorOf([m("owner", 1n, "owner")], "owner")).toBeUndefined();
  });
  it("admins cannot remove the owner; members remove nobody; deletes by sender or group moderators", () => {
    expect(canRemove("owner", "admin")).toBe(true);
    expect(canRemove("admin", "member")).toBe(true);
    expect(canRemove("admin", "owner")).toBe(false);
    expect(canRemove("member", "member")).toBe(false);
    expect(canDeleteMessage("group", "admin", false)).toBe(true);
    expect(canDeleteMessage("direct", "owner", false)).toBe(false);
    expect(canDeleteMessage("direct", "member", true)).toBe(true);
  });
});

describe("ids and page tokens", () => {
  it("a direct channel id is the same from both sides, opaque, and distinct per pair", () => {
    expect(directChannelId("a", "b")).toBe(directChannelId("b", "a"));
    expect(directChannelId("a", "b")).not.toBe(directChannelId("a", "c"));
    expect(directChannelId("alice", "bob")).not.toContain("alice");
    expect(directPairKey("ab", "c")).not.toBe(directPairKey("a", "bc"));
    expect(groupChannelIdFor("a", "r")).toMatch(/^g[A-Za-z0-9_-]{32}$/);
    expect(groupRequestHash("n", ["a", "b"])).toBe(groupRequestHash("n", ["b", "a"]));
  });
  it("page tokens round-trip for their owner only", () => {
    const t = encodeChannelPageToken("alice", 40);
    expect(decodeChannelPageToken("alice", t)).toBe(40);
    expect(decodeChannelPageToken("alice", "")).toBe(0);
    expect(field(() => decodeChannelPageToken("bob", t))).toBe("page_token");
    expect(field(() => decodeChannelPageToken("alice", "xyz"))).toBe("page_token");
  });
});

describe("typing limiter", () => {
  it("allows `limit` per window per key, tells when to retry, and forgets idle keys", () => {
    const l = new SlidingWindowLimiter(2, 1_000);
    expect(l.take("k", 0)).toBe(0);
    expect(l.take("k", 100)).toBe(0);
    expect(l.take("k", 200)).toBe(800);
    expect(l.take("other", 200)).toBe(0);
    expect(l.take("k", 1_001)).toBe(0);
    l.take("z", 5_000);
    expect(l.size).toBe(1);
  });
});
