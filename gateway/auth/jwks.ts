/**
 * Keys from a JWKS URL, cached by kid.
 *
 * - Fetched on first use, then kept for `maxAgeMs` (default 10 min); an expired set is
 *   refreshed in the background of the next lookup while the old keys keep working.
 * - A kid we do not know triggers one refresh (key rotation), at most once per
 *   `minRefreshIntervalMs` (default 30 s) so random kids cannot make us hammer the issuer.
 * - Concurrent lookups share one fetch. A failed fetch keeps the last good keys; with no keys
 *   at all the call fails Unavailable (the caller's token may be fine: it is our problem, 503).
 * - Tokens without kid are accepted only when the set has exactly one usable key.
 */
import { DomainError } from "../../platform/errors.js";
import type { EngineLog } from "../../platform/engines/log.js";
import { silentLog } from "../../platform/engines/log.js";
import { publicKeyFromJwk, type JwtHeader, type VerifyKey } from "./jwt.js";

export interface JwksOptions {
  readonly url: string;
  readonly maxAgeMs?: number;
  readonly minRefreshIntervalMs?: number;
  readonly fetchTimeoutMs?: number;
  readonly log?: EngineLog;
  /** Milliseconds clock (tests). */
  readonly now?: () => number;
}

export class JwksCache {
  private keys = new Map<string, VerifyKey>();
  private unnamed: VerifyKey[] = [];
  private fetchedAt = -Infinity;
  private lastAttempt = -Infinity;
  private inflight: Promise<void> | undefined;
  private readonly log: EngineLog;
  private readonly now: () => number;

  constructor(private readonly opts: JwksOptions) {
    this.log = (opts.log ?? silentLog).child({ component: "jwks" });
    this.now = opts.now ?? Date.now;
  }

  /** How many fetches were made (tests). */
  fetches = 0;

  async resolve(header: JwtHeader): Promise<VerifyKey | undefined> {
    const maxAge = this.opts.maxAgeMs ?? 600_000;
    if (this.fetchedAt === -Infinity) {
      await this.refresh(true);
    } else if (this.now() - this.fetchedAt > maxAge) {
      void this.refresh(false).catch(() => {});
    }
    let key = this.lookup(header);
    if (!key && header.kid !== undefined && this.now() - this.lastAttempt >= (this.opts.minRefreshIntervalMs ?? 30_000)) {
      await this.refresh(false).catch(() => {});
      key = this.lookup(header);
    }
    return key;
  }

  private lookup(header: JwtHeader): VerifyKey | undefined {
    if (header.kid !== undefined) return this.keys.get(header.kid);
    const all = [...this.keys.values(), ...this.unnamed];
    return all.length === 1 ? all[0] : undefined;
  }

  private refresh(mustSucceed: boolean): Promise<void> {
    this.inflight ??= this.fetchOnce().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight.catch((err: unknown) => {
      if (mustSucceed && this.fetchedAt === -Infinity) {
        throw new DomainError("Unavailable", `cannot verify tokens: the JWKS at ${this.opts.url} is unavailable`, { retryAfterMs: 1000 }, { cause: err });
      }
    });
  }

  private async fetchOnce(): Promise<void> {
    this.lastAttempt = this.now();
    this.fetches++;
    try {
      const res = await fetch(this.opts.url, {
        signal: AbortSignal.timeout(this.opts.fetchTimeoutMs ?? 3_000),
        headers: { accept: "application/json" },
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = (await res.json()) as { keys?: unknown };
      if (!Array.isArray(body.keys)) throw new Error("no keys array");
      const keys = new Map<string, VerifyKey>();
      const unnamed: VerifyKey[] = [];
      for (const jwk of body.keys as Record<string, unknown>[]) {
        if (typeof jwk !== "object" || jwk === null) continue;
        const key = publicKeyFromJwk(jwk as Parameters<typeof publicKeyFromJwk>[0]);
        if (!key) continue;
        if (typeof jwk["kid"] === "string") keys.set(jwk["kid"], key);
        else unnamed.push(key);
      }
      this.keys = keys;
      this.unnamed = unnamed;
      this.fetchedAt = this.now();
      this.log.info({ url: this.opts.url, keys: keys.size + unnamed.length }, "jwks loaded");
    } catch (err) {
      this.log.warn({ url: this.opts.url, err: err instanceof Error ? err.message : String(err) }, "jwks fetch failed; keeping the last keys");
      throw err;
    }
  }
}
