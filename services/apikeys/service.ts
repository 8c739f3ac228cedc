/**
 * Issuing API keys over an ApiKeyStore (verification is the gateway's: gateway/auth/api-keys.ts).
 */
import { isValidUserId, USER_ID_RULE } from "../../platform/user-id.js";
import { mintApiKey } from "./keys.js";
import type { ApiKeyRecord, ApiKeyStore } from "./ports.js";

export interface IssuedApiKey {
  /** The plaintext key: shown once, never stored. */
  readonly key: string;
  readonly record: ApiKeyRecord;
}

export class InvalidOwnerError extends Error {
  override readonly name = "InvalidOwnerError";
}

export async function issueApiKey(store: ApiKeyStore, ownerId: string, name = ""): Promise<IssuedApiKey> {
  // The owner becomes the caller's identity: the same rule as a JWT subject.
  if (!isValidUserId(ownerId)) throw new InvalidOwnerError(`owner must be a valid user id: ${USER_ID_RULE}`);
  for (;;) {
    const minted = mintApiKey(ownerId, name);
    if (await store.insert(minted.record)) return minted;
  }
}
