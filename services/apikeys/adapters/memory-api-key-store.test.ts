import { describe, expect, it } from "vitest";
import { ApiKeyVerifier } from "../../../gateway/auth/api-keys.js";
import { openMemoryEngine } from "../../../platform/engine.js";
import { silentLog } from "../../../platform/engines/log.js";
import { apiKeyStoreConformance } from "../api-key-store.conformance.js";
import { hashSecret, mintApiKey, parseApiKey, secretMatches } from "../keys.js";
import { issueApiKey } from "../service.js";
import { createApiKeyStore } from "../store.js";
import { MemoryApiKeyStore } from "./memory-api-key-store.js";

apiKeyStoreConformance(async () => ({ store: new MemoryApiKeyStore(), cleanup: async () => {} }));

describe("API key format and hashing", () => {
  it("mints sb_<16 base32>_<43 base64url> keys that parse back, unique each time", () => {
    const keys = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const { key, record } = mintApiKey("o");
      expect(key).toMatch(/^sb_[a-z2-7]{16}_[A-Za-z0-9_-]{43}$/);
      const p = parseApiKey(key)!;
      expect(p.id).toBe(record.id);
      expect(secretMatches(p.secret, record.secretSha256)).toBe(true);
      keys.add(key);
    }
    expect(keys.size).toBe(200);
  });

  it("compares digests, refusing other secrets and corrupt stored digests", () => {
    const h = hashSecret("s3cret");
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(secretMatches("s3cret", h)).toBe(true);
    expect(secretMatches("s3creT", h)).toBe(false);
    expect(secretMatches("s3cret", "abcd")).toBe(false);
  });

  it("rejects anything not in the format", () => {
    for (const k of ["", "sb_", "sk_aaaaaaaaaaaaaaaa_" + "a".repeat(43), "sb_AAAAAAAAAAAAAAAA_" + "a".repeat(43), "sb_aaaaaaaaaaaaaaaa_short"]) {
      expect(parseApiKey(k)).toBeUndefined();
    }
  });
});

describe("verifier cache and engine store", () => {
  it("with a cache TTL, revocation takes effect when the cached entry expires", async () => {
    let now = 0;
    const store = new MemoryApiKeyStore();
    const verifier = new ApiKeyVerifier(store, { cacheTtlMs: 5_000, now: () => now });
    const { key, record } = await issueApiKey(store, "p");
    await verifier.verify(key);
    await store.revoke(record.id, new Date());
    now = 1_000;
    await expect(verifier.verify(key)).resolves.toBeTruthy();
    now = 6_000;
    await expect(verifier.verify(key)).rejects.toMatchObject({ reason: "revoked" });
  });

  it("createApiKeyStore shares one memory store per engine", async () => {
    const engine = openMemoryEngine(silentLog);
    const { record } = await issueApiKey(createApiKeyStore(engine), "p");
    expect(await createApiKeyStore(engine).get(record.id)).toEqual(record);
    expect(await createApiKeyStore(openMemoryEngine(silentLog)).get(record.id)).toBeUndefined();
  });
});
