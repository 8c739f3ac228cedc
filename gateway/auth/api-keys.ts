/** Verifies presented API keys against the ApiKeyStore (services/apikeys). */
import { parseApiKey, secretMatches } from "../../services/apikeys/keys.js";
import type { ApiKeyRecord, ApiKeyStore } from "../../services/apikeys/ports.js";
import { AuthError } from "./errors.js";

export interface ApiKeyVerifierOptions {
  /** Cache verified records this long (0 = always read the store); revocation takes effect within it. */
  readonly cacheTtlMs?: number;
  readonly now?: () => number;
}

/** Checks presented keys; throws AuthError (malformed / bad_signature / revoked). */
export class ApiKeyVerifier {
  private readonly cache = new Map<string, { record: ApiKeyRecord | undefined; until: number }>();

  constructor(
    private readonly store: ApiKeyStore,
    private readonly opts: ApiKeyVerifierOptions = {},
  ) {}

  async verify(presented: string): Promise<ApiKeyRecord> {
    const parsed = parseApiKey(presented);
    if (!parsed) throw new AuthError("malformed", "malformed API key: expected sb_<id>_<secret>");
    const record = await this.lookup(parsed.id);
    // Same message for unknown id and wrong secret: do not reveal which ids exist.
    if (!record || !secretMatches(parsed.secret, record.secretSha256)) throw new AuthError("bad_signature", "invalid API key");
    if (record.revokedAt) throw new AuthError("revoked", `API key ${record.id} was revoked`);
    return record;
  }

  private async lookup(id: string): Promise<ApiKeyRecord | undefined> {
    const ttl = this.opts.cacheTtlMs ?? 0;
    if (ttl <= 0) return this.store.get(id);
    const now = (this.opts.now ?? Date.now)();
    const hit = this.cache.get(id);
    if (hit && hit.until > now) return hit.record;
    const record = await this.store.get(id);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(id, { record, until: now + ttl });
    return record;
  }
}
