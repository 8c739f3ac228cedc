import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { generateKeyPairSync, sign as cryptoSign, type KeyObject } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError } from "./errors.js";
import { JwksCache } from "./jwks.js";
import { secretKey, signHs256, verifyJwt, type KeyResolver } from "./jwt.js";

const SECRET = "unit-test-secret-0123456789abcdef0123456789";
const NOW = 1_800_000_000;
const hs: KeyResolver = (h) => (h.alg === "HS256" ? secretKey(SECRET) : undefined);

async function reason(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AuthError);
  return `${(e as AuthError).reason}: ${(e as AuthError).message}`;
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

function signAsym(alg: "RS256" | "ES256", key: KeyObject, claims: object, kid?: string): string {
  const input = `${b64({ alg, typ: "JWT", ...(kid ? { kid } : {}) })}.${b64(claims)}`;
  const sig = cryptoSign("sha256", Buffer.from(input), alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key);
  return `${input}.${sig.toString("base64url")}`;
}

describe("HS256", () => {
  const verify = (t: string, opts = {}) => verifyJwt(t, hs, { now: NOW, leewaySeconds: 30, ...opts });

  it("accepts a valid token and returns its claims", async () => {
    const claims = await verify(signHs256({ sub: "alice", exp: NOW + 60 }, SECRET));
    expect(claims.sub).toBe("alice");
  });

  it("refuses an expired token (beyond the leeway), accepts one inside it", async () => {
    expect(await reason(verify(signHs256({ sub: "a", exp: NOW - 31 }, SECRET)))).toMatch(/^expired: token expired at /);
    await expect(verify(signHs256({ sub: "a", exp: NOW - 10 }, SECRET))).resolves.toBeTruthy();
  });

  it("refuses a token not yet valid (nbf)", async () => {
    expect(await reason(verify(signHs256({ sub: "a", nbf: NOW + 120, exp: NOW + 600 }, SECRET)))).toMatch(/^not_yet_valid: /);
    await expect(verify(signHs256({ sub: "a", nbf: NOW + 20, exp: NOW + 600 }, SECRET))).resolves.toBeTruthy();
  });

  it("refuses a bad signature (other secret, tampered payload)", async () => {
    expect(await reason(verify(signHs256({ sub: "a" }, "another-secret-0123456789abcdef0123")))).toBe("bad_signature: token signature is invalid");
    const [h, , s] = signHs256({ sub: "alice" }, SECRET).split(".");
    expect(await reason(verify(`${h}.${b64({ sub: "admin" })}.${s}`))).toMatch(/^bad_signature/);
  });

  it("refuses alg none (with or without a signature)", async () => {
    const none = `${b64({ alg: "none", typ: "JWT" })}.${b64({ sub: "a" })}.`;
    expect(await reason(verify(none))).toMatch(/^(unsupported_alg|malformed)/);
    const noneSigned = `${b64({ alg: "none" })}.${b64({ sub: "a" })}.${Buffer.from("x").toString("base64url")}`;
    expect(await reason(verify(noneSigned))).toMatch(/^unsupported_alg: token algorithm "none"/);
    const lower = `${b64({ alg: "None" })}.${b64({ sub: "a" })}.AA`;
    expect(await reason(verify(lower))).toMatch(/^unsupported_alg/);
  });

  it("refuses HS384/HS512 and unknown algorithms", async () => {
    const t = signHs256({ sub: "a" }, SECRET, { alg: "HS512" });
    expect(await reason(verify(t))).toMatch(/^unsupported_alg/);
  });

  it("refuses malformed tokens with a clear reason", async () => {
    expect(await reason(verify("abc"))).toMatch(/^malformed: malformed token: expected a JWT/);
    expect(await reason(verify("a.b.c.d"))).toMatch(/^malformed/);
    expect(await reason(verify(`${b64({ alg: "HS256" })}.bm90IGpzb24.AA`))).toMatch(/^malformed: malformed token: the payload/);
    expect(await reason(verify(`${b64([1])}.${b64({ sub: "a" })}.AA`))).toMatch(/^malformed/);
    expect(await reason(verify(signHs256({ exp: NOW + 60 }, SECRET)))).toMatch(/^malformed: token has no subject/);
    expect(await reason(verify(signHs256({ sub: "a", exp: "tomorrow" }, SECRET)))).toMatch(/exp must be a number/);
  });

  it("checks iss and aud when configured", async () => {
    const t = signHs256({ sub: "a", exp: NOW + 60, iss: "https://issuer", aud: ["x", "switchboard"] }, SECRET);
    await expect(verify(t, { issuer: "https://issuer", audience: "switchboard" })).resolves.toBeTruthy();
    expect(await reason(verify(t, { issuer: "https://other" }))).toMatch(/^wrong_issuer/);
    expect(await reason(verify(t, { audience: "nope" }))).toMatch(/^wrong_audience/);
    expect(await reason(verify(signHs256({ sub: "a", exp: NOW + 60 }, SECRET), { audience: "switchboard" }))).toMatch(/^wrong_audience/);
  });
});

describe("token policy: exp required, bounded lifetime", () => {
  const verify = (claims: Record<string, unknown>, opts = {}) => verifyJwt(signHs256(claims, SECRET), hs, { now: NOW, leewaySeconds: 30, ...opts });

  it("refuses a token without exp", async () => {
    expect(await reason(verify({ sub: "alice" }))).toBe("missing_exp: token has no expiry (exp): tokens without one are not accepted");
    expect(await reason(verify({ sub: "alice", iat: NOW }))).toMatch(/^missing_exp: /);
  });

  it("refuses an exp further than the maximum lifetime (default 24 h) from now, plus leeway", async () => {
    await expect(verify({ sub: "alice", exp: NOW + 86_400 + 30 })).resolves.toBeTruthy();
    expect(await reason(verify({ sub: "alice", exp: NOW + 86_400 + 31 }))).toMatch(/^lifetime_too_long: token expires too far in the future: at most 86400 s/);
    expect(await reason(verify({ sub: "alice", exp: 32_503_680_000 }))).toMatch(/^lifetime_too_long: /);
    expect(await reason(verify({ sub: "alice", exp: NOW + 3_600 }, { maxLifetimeSeconds: 600 }))).toMatch(/^lifetime_too_long: .*at most 600 s/);
  });

  it("refuses exp - iat longer than the maximum lifetime even when exp itself is near", async () => {
    await expect(verify({ sub: "alice", iat: NOW - 3_600, exp: NOW + 86_400 - 3_600 })).resolves.toBeTruthy();
    expect(await reason(verify({ sub: "alice", iat: NOW - 30 * 86_400, exp: NOW + 60 }))).toMatch(/^lifetime_too_long: token lifetime \(exp - iat\) is 2592060 s: at most 86400 s/);
    expect(await reason(verify({ sub: "alice", iat: "yesterday", exp: NOW + 60 }))).toMatch(/^malformed: .*iat must be a number/);
  });
});

describe("subject: a valid user id, exactly as signed", () => {
  const verify = (sub: unknown) => verifyJwt(signHs256({ sub, exp: NOW + 60 }, SECRET), hs, { now: NOW });

  it.each(["bob ", " bob", "bob\t", "\tbob", "bøb", "bob\r\nx-injected: 1", "bob\n", "bob\u0000", "日本", "x".repeat(257)])(
    "refuses sub %j as not a valid user id (never trimmed into another)",
    async (sub) => {
      const r = await reason(verify(sub));
      expect(r).toMatch(/^invalid_subject: token subject \(sub\) is not a valid user id: 1-256 printable ASCII/);
      // The refused value is not echoed (it may hold what breaks headers and logs).
      expect(r).not.toContain(sub);
    },
  );

  it("keeps a valid sub byte for byte", async () => {
    expect((await verify("auth0|Bob.Smith@example.com")).sub).toBe("auth0|Bob.Smith@example.com");
  });
});

describe("asymmetric keys and alg confusion", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rsaJwk = { ...rsa.publicKey.export({ format: "jwk" }), kid: "rsa-1", alg: "RS256", use: "sig" };
  const ecJwk = { ...ec.publicKey.export({ format: "jwk" }), kid: "ec-1" };
  let keys: object[] = [rsaJwk, ecJwk];
  let server: Server;
  let url: string;
  let hits = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("verifies RS256 and ES256 tokens by kid from a JWKS served over HTTP", async () => {
    const jwks = new JwksCache({ url });
    const resolve: KeyResolver = (h) => jwks.resolve(h);
    const rs = signAsym("RS256", rsa.privateKey, { sub: "rsa-user", exp: NOW + 60 }, "rsa-1");
    const es = signAsym("ES256", ec.privateKey, { sub: "ec-user", exp: NOW + 60 }, "ec-1");
    expect((await verifyJwt(rs, resolve, { now: NOW })).sub).toBe("rsa-user");
    expect((await verifyJwt(es, resolve, { now: NOW })).sub).toBe("ec-user");
    expect(jwks.fetches).toBe(1);
  });

  it("refuses alg confusion: HS256 signed with the RSA public key, RS256 header on the EC key", async () => {
    const jwks = new JwksCache({ url });
    // HS256 never resolves to a JWKS key: the public key bytes as an HMAC secret get nowhere.
    const resolve: KeyResolver = (h) => (h.alg === "HS256" ? undefined : jwks.resolve(h));
    const pem = rsa.publicKey.export({ type: "spki", format: "pem" });
    const forged = signHs256({ sub: "admin" }, Buffer.from(pem), { kid: "rsa-1" });
    expect(await reason(verifyJwt(forged, resolve, { now: NOW }))).toMatch(/^unknown_key/);
    // Even a resolver that hands out the RSA key for HS256 is refused: the key fixes the alg.
    const naive: KeyResolver = (h) => jwks.resolve({ ...h, alg: "RS256" });
    expect(await reason(verifyJwt(forged, naive, { now: NOW }))).toMatch(/^unsupported_alg: token algorithm HS256 does not match the key \(RS256\)/);
    const esOnRsa = signAsym("ES256", ec.privateKey, { sub: "x" }, "rsa-1");
    expect(await reason(verifyJwt(esOnRsa, (h) => jwks.resolve(h), { now: NOW }))).toMatch(/^unsupported_alg/);
  });

  it("refuses a token signed by another key with a known kid", async () => {
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwks = new JwksCache({ url });
    const t = signAsym("RS256", other.privateKey, { sub: "x" }, "rsa-1");
    expect(await reason(verifyJwt(t, (h) => jwks.resolve(h), { now: NOW }))).toBe("bad_signature: token signature is invalid");
  });

  it("follows key rotation: an unknown kid refetches once (rate-limited), the new key verifies", async () => {
    let clock = 0;
    const jwks = new JwksCache({ url, minRefreshIntervalMs: 30_000, now: () => clock });
    const resolve: KeyResolver = (h) => jwks.resolve(h);
    const first = signAsym("RS256", rsa.privateKey, { sub: "a", exp: NOW + 60 }, "rsa-1");
    await verifyJwt(first, resolve, { now: NOW });
    const rotated = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const t2 = signAsym("ES256", rotated.privateKey, { sub: "rotated", exp: NOW + 60 }, "ec-2");
    // Within the refresh interval an unknown kid does not refetch.
    clock = 1_000;
    keys = [rsaJwk, ecJwk, { ...rotated.publicKey.export({ format: "jwk" }), kid: "ec-2" }];
    expect(await reason(verifyJwt(t2, resolve, { now: NOW }))).toMatch(/^unknown_key: token signed with unknown key id "ec-2"/);
    expect(jwks.fetches).toBe(1);
    clock = 31_000;
    expect((await verifyJwt(t2, resolve, { now: NOW })).sub).toBe("rotated");
    expect(jwks.fetches).toBe(2);
    // Random kids cannot make it hammer the issuer.
    clock = 32_000;
    const random = signAsym("ES256", rotated.privateKey, { sub: "x" }, "random-kid");
    expect(await reason(verifyJwt(random, resolve, { now: NOW }))).toMatch(/^unknown_key/);
    expect(jwks.fetches).toBe(2);
    keys = [rsaJwk, ecJwk];
  });

  it("ignores symmetric (oct) and private-only junk in the JWKS", async () => {
    keys = [{ kty: "oct", k: Buffer.from(SECRET).toString("base64url"), kid: "oct-1", alg: "HS256" }, rsaJwk];
    const jwks = new JwksCache({ url });
    const t = signHs256({ sub: "a" }, SECRET, { kid: "oct-1" });
    expect(await reason(verifyJwt(t, (h) => jwks.resolve({ ...h, alg: "RS256" }), { now: NOW }))).toMatch(/^unknown_key/);
    keys = [rsaJwk, ecJwk];
  });

  it("a JWKS that cannot be fetched is Unavailable (our problem), not Unauthenticated", async () => {
    const jwks = new JwksCache({ url: "http://127.0.0.1:1/jwks", fetchTimeoutMs: 500 });
    const t = signAsym("RS256", rsa.privateKey, { sub: "a" }, "rsa-1");
    await expect(verifyJwt(t, (h) => jwks.resolve(h), { now: NOW })).rejects.toMatchObject({ kind: "Unavailable" });
    expect(hits).toBeGreaterThan(0);
  });
});
