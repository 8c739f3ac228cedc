import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeyVerifier } from "../../gateway/auth/api-keys.js";
import { AuthError } from "../../gateway/auth/errors.js";
import { hashSecret, mintApiKey, parseApiKey } from "./keys.js";
import type { ApiKeyStore } from "./ports.js";
import { issueApiKey } from "./service.js";

export interface ApiKeyStoreFixture {
  readonly store: ApiKeyStore;
  cleanup(): Promise<void>;
}

/** The ApiKeyStore contract (and key verification over it); run by every adapter's test file. */
export function apiKeyStoreConformance(makeStore: () => Promise<ApiKeyStoreFixture>): void {
  describe("ApiKeyStore conformance", () => {
    let f: ApiKeyStoreFixture;
    beforeAll(async () => {
      f = await makeStore();
    });
    afterAll(async () => {
      await f.cleanup();
    });
    const owner = () => `owner-${Math.random().toString(36).slice(2, 10)}`;

    it("stores only the SHA-256 of the secret and returns the record field for field", async () => {
      const { key, record } = mintApiKey(owner(), "ci", new Date("2025-01-02T03:04:05.678Z"));
      expect(await f.store.insert(record)).toBe(true);
      const got = await f.store.get(record.id);
      expect(got).toEqual(record);
      const secret = parseApiKey(key)!.secret;
      expect(got!.secretSha256).toBe(hashSecret(secret));
      expect(JSON.stringify(got)).not.toContain(secret);
    });

    it("get of an unknown id is undefined; insert never overwrites an id", async () => {
      expect(await f.store.get("aaaaaaaaaaaaaaaa")).toBeUndefined();
      const { record } = mintApiKey(owner());
      expect(await f.store.insert(record)).toBe(true);
      expect(await f.store.insert({ ...record, ownerId: "thief", secretSha256: hashSecret("x") })).toBe(false);
      expect((await f.store.get(record.id))?.ownerId).toBe(record.ownerId);
    });

    it("revoke marks the key (idempotent, first time kept); unknown id is false", async () => {
      const { record } = mintApiKey(owner());
      await f.store.insert(record);
      const t1 = new Date("2025-02-01T00:00:00.000Z");
      expect(await f.store.revoke(record.id, t1)).toBe(true);
      expect(await f.store.revoke(record.id, new Date("2025-03-01T00:00:00.000Z"))).toBe(true);
      expect((await f.store.get(record.id))?.revokedAt).toEqual(t1);
      expect(await f.store.revoke("zzzzzzzzzzzzzzzz", t1)).toBe(false);
    });

    it("lists an owner's keys, oldest first, revoked included", async () => {
      const o = owner();
      const a = mintApiKey(o, "a", new Date("2025-01-01T00:00:00.000Z")).record;
      const b = mintApiKey(o, "b", new Date("2025-01-02T00:00:00.000Z")).record;
      await f.store.insert(b);
      await f.store.insert(a);
      await f.store.insert(mintApiKey(owner()).record);
      await f.store.revoke(a.id, new Date("2025-01-03T00:00:00.000Z"));
      const list = await f.store.listByOwner(o);
      expect(list.map((r) => r.name)).toEqual(["a", "b"]);
      expect(list[0]!.revokedAt).toBeInstanceOf(Date);
    });

    it("verification: right key -> owner; wrong secret, unknown id, malformed and revoked -> Unauthenticated", async () => {
      const verifier = new ApiKeyVerifier(f.store);
      const o = owner();
      const { key, record } = await issueApiKey(f.store, o, "partner");
      expect((await verifier.verify(key)).ownerId).toBe(o);
      const reasonOf = async (k: string) => ((await verifier.verify(k).catch((e: unknown) => e)) as AuthError).reason;
      const wrongSecret = key.slice(0, -4) + (key.endsWith("AAAA") ? "BBBB" : "AAAA");
      expect(await reasonOf(wrongSecret)).toBe("bad_signature");
      expect(await reasonOf(`sb_${"b".repeat(16)}_${key.split("_").slice(2).join("_")}`)).toBe("bad_signature");
      expect(await reasonOf("sb_nope")).toBe("malformed");
      await f.store.revoke(record.id, new Date());
      const e = await verifier.verify(key).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(AuthError);
      expect((e as AuthError).reason).toBe("revoked");
      expect((e as AuthError).message).toBe(`API key ${record.id} was revoked`);
    });
  });
}
