/**
 * Issuing API keys over an ApiKeyStore (verification is the gateway's: gateway/auth/api-keys.ts).
 */
import { mintApiKey } from "./keys.js";
import type { ApiKeyRecord, ApiKeyStore } from "./ports.js";

export interface IssuedApiKey {
  /** The plaintext key: shown once, never stored. */
  readonly key: string;
  readonly record: ApiKeyRecord;
}

export async function issueApiKey(store: ApiKeyStore, ownerId: string, name = ""): Promise<IssuedApiKey> {
  if (ownerId.trim() === "" || ownerId.length > 256) throw new Error("owner must be 1-256 characters");
  for (;;) {
    const minted = mintApiKey(ownerId, name);
    if (await store.insert(minted.record)) return minted;
  }
}
