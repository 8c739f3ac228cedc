import { describe, expect, it } from "vitest";
import {
  ASSERTION_LEEWAY_MS,
  ASSERTION_LIFETIME_MS,
  meshKey,
  signIdentityAssertion,
  verifyIdentityAssertion,
} from "./identity-assertion.js";
import type { Identity } from "./identity.js";
import { ConfigError, loadConfig } from "./config.js";
import { meshKeyOf } from "./mesh-secret.js";
import { isValidUserId } from "./user-id.js";

const key = meshKey("unit-test-mesh-secret-0123456789abcdef");
const other = meshKey("another-mesh-secret-0123456789abcdef00");
const LIST = "/switchboard.shortener.v1.ShortenerService/ListLinks";
const GET = "/switchboard.shortener.v1.ShortenerService/GetLink";
const NOW = 1_800_000_000_000;
const bob: Identity = { userId: "bob", kind: "user", expiresAtMs: NOW + 3_600_000 };

describe("user ids", () => {
  it("accepts 1-256 printable ASCII characters, nothing else", () => {
    for (const ok of ["bob", "a", "auth0|abc123", "user@example.com", "550e8400-e29b-41d4-a716-446655440000", "~!#", "x".repeat(256)]) {
      expect(isValidUserId(ok), ok).toBe(true);
    }
    for (const bad of ["", "bob ", " bob", "bob\t", "\tbob", "b ob", "bob\r", "bob\n", "bob\u0000", "bøb", "日本", "bob\u00a0", "x".repeat(257), 42, undefined]) {
      expect(isValidUserId(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});

describe("identity assertions", () => {
  it("round-trips the exact identity, credential expiry included", () => {
    const a = signIdentityAssertion(key, bob, LIST, NOW);
    expect(verifyIdentityAssertion(key, a, LIST, NOW + 1_000)).toEqual({ ok: true, identity: bob });
    const apiKey: Identity = { userId: "partner~1", kind: "api_key" };
    expect(verifyIdentityAssertion(key, signIdentityAssertion(key, apiKey, LIST, NOW), LIST, NOW)).toEqual({ ok: true, identity: apiKey });
  });

  it("is refused when signed with another secret", () => {
    expect(verifyIdentityAssertion(key, signIdentityAssertion(other, bob, LIST, NOW), LIST, NOW)).toEqual({ ok: false, reason: "bad_mac" });
  });

  it("is refused for another method than the one it was issued for", () => {
    expect(verifyIdentityAssertion(key, signIdentityAssertion(key, bob, GET, NOW), LIST, NOW)).toEqual({ ok: false, reason: "bad_mac" });
  });

  it("expires after its lifetime plus the clock-skew leeway, and refuses one from too far in the future", () => {
    const a = signIdentityAssertion(key, bob, LIST, NOW);
    expect(verifyIdentityAssertion(key, a, LIST, NOW + ASSERTION_LIFETIME_MS + ASSERTION_LEEWAY_MS).ok).toBe(true);
    expect(verifyIdentityAssertion(key, a, LIST, NOW + ASSERTION_LIFETIME_MS + ASSERTION_LEEWAY_MS + 1)).toEqual({ ok: false, reason: "expired" });
    expect(verifyIdentityAssertion(key, a, LIST, NOW - ASSERTION_LEEWAY_MS - 1)).toEqual({ ok: false, reason: "not_yet_valid" });
  });

  it("cannot be edited: user, kind, expiry or MAC changed -> refused", () => {
    const a = signIdentityAssertion(key, bob, LIST, NOW);
    const [v, , kind, cred, exp, mac] = a.split(".") as [string, string, string, string, string, string];
    const alice = Buffer.from("alice").toString("base64url");
    expect(verifyIdentityAssertion(key, [v, alice, kind, cred, exp, mac].join("."), LIST, NOW).ok).toBe(false);
    expect(verifyIdentityAssertion(key, [v, Buffer.from("bob").toString("base64url"), "api_key", cred, exp, mac].join("."), LIST, NOW).ok).toBe(false);
    expect(verifyIdentityAssertion(key, [v, Buffer.from("bob").toString("base64url"), kind, cred, String(Number(exp) + 1), mac].join("."), LIST, NOW).ok).toBe(false);
    expect(verifyIdentityAssertion(key, [v, Buffer.from("bob").toString("base64url"), kind, "", exp, mac].join("."), LIST, NOW).ok).toBe(false);
    // The last base64url character carries 2 spare bits: a non-canonical spelling of the same MAC is refused too.
    const flipped = mac.slice(0, -1) + (mac.endsWith("A") ? "B" : "A");
    expect(verifyIdentityAssertion(key, [v, Buffer.from("bob").toString("base64url"), kind, cred, exp, flipped].join("."), LIST, NOW).ok).toBe(false);
  });

  it("refuses garbage, a plain user id and oversized values without throwing", () => {
    for (const junk of ["", "bob", "v1", "v1.....", "v2.Ym9i.user..1.x", `v1.Ym9i.admin..${NOW}.x`, `v1.Ym9i.user.soon.${NOW}.x`, "v1.".padEnd(600, "A")]) {
      expect(verifyIdentityAssertion(key, junk, LIST, NOW).ok, junk).toBe(false);
    }
  });

  it("refuses a signed user id that is not a valid id (trailing space), even with a good MAC", () => {
    const bent = signIdentityAssertion(key, { userId: "bob ", kind: "user" }, LIST, NOW);
    expect(verifyIdentityAssertion(key, bent, LIST, NOW)).toEqual({ ok: false, reason: "invalid_user_id" });
  });
});

describe("the mesh secret", () => {
  it("cluster engine: required, ConfigError naming SWITCHBOARD_MESH_SECRET; at least 32 bytes when set", () => {
    expect(() => meshKeyOf(loadConfig({ SWITCHBOARD_ENGINE: "cluster" }))).toThrow(ConfigError);
    expect(() => meshKeyOf(loadConfig({ SWITCHBOARD_ENGINE: "cluster" }))).toThrow(/SWITCHBOARD_MESH_SECRET is required on the cluster engine/);
    expect(() => loadConfig({ SWITCHBOARD_ENGINE: "cluster", SWITCHBOARD_MESH_SECRET: "x".repeat(31) })).toThrow(/SWITCHBOARD_MESH_SECRET must be at least 32 bytes/);
    const a = meshKeyOf(loadConfig({ SWITCHBOARD_ENGINE: "cluster", SWITCHBOARD_MESH_SECRET: "x".repeat(32) }));
    const b = meshKeyOf(loadConfig({ SWITCHBOARD_ENGINE: "cluster", SWITCHBOARD_MESH_SECRET: "x".repeat(32) }));
    expect(verifyIdentityAssertion(b, signIdentityAssertion(a, bob, LIST, NOW), LIST, NOW).ok).toBe(true);
  });

  it("memory engine without one: a random secret shared by everything in this process, unknown outside it", () => {
    const a = meshKeyOf(loadConfig({}));
    const b = meshKeyOf(loadConfig({ SWITCHBOARD_ENGINE: "memory" }));
    const signed = signIdentityAssertion(a, bob, LIST, NOW);
    expect(verifyIdentityAssertion(b, signed, LIST, NOW).ok).toBe(true);
    expect(verifyIdentityAssertion(meshKey(Buffer.alloc(32)), signed, LIST, NOW).ok).toBe(false);
  });
});
