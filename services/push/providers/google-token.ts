/**
 * OAuth2 access tokens for a Google service account: the JWT bearer grant (RFC 7523), an RS256
 * assertion signed with the account's key, POSTed to the account's token_uri. A token is reused
 * until a minute before it expires (or a tenth of its life, for short ones) and concurrent callers
 * share one fetch, so a burst of sends costs one token request.
 */
import { createPrivateKey, type KeyObject } from "node:crypto";
import type { HttpClient } from "./http-client.js";
import { signJwt } from "./jwt.js";

export interface ServiceAccount {
  readonly project_id: string;
  readonly client_email: string;
  readonly private_key: string;
  readonly private_key_id?: string;
  readonly token_uri: string;
}

export const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";

export function parseServiceAccount(json: string): ServiceAccount {
  const a = JSON.parse(json) as Partial<ServiceAccount>;
  for (const field of ["project_id", "client_email", "private_key", "token_uri"] as const) {
    if (typeof a[field] !== "string" || a[field] === "") throw new Error(`service account JSON has no ${field}`);
  }
  return a as ServiceAccount;
}

/** The token endpoint did not give a token: `retryable` for 5xx / network, not for a refused grant. */
export class TokenError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

export class GoogleAccessTokens {
  private readonly key: KeyObject;
  private current: { token: string; refreshAtMs: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly account: ServiceAccount,
    private readonly http: HttpClient,
    private readonly now: () => number,
  ) {
    this.key = createPrivateKey(account.private_key);
  }

  /** A valid access token; `stale` (the one a 401 came back for) is never answered again. */
  async token(stale?: string): Promise<string> {
    if (this.current && this.current.token !== stale && this.now() < this.current.refreshAtMs) return this.current.token;
    if (stale !== undefined && this.current?.token === stale) this.current = undefined;
    this.pending ??= this.fetch().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async fetch(): Promise<string> {
    const iat = Math.floor(this.now() / 1000);
    const assertion = signJwt(
      "RS256",
      this.key,
      { iss: this.account.client_email, scope: FCM_SCOPE, aud: this.account.token_uri, iat, exp: iat + 3600 },
      this.account.private_key_id ? { kid: this.account.private_key_id } : {},
    );
    const form = new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion }).toString();
    const answer = await this.http.post(new URL(this.account.token_uri), { "content-type": "application/x-www-form-urlencoded" }, form);
    if (answer.kind === "network") throw new TokenError(`token endpoint: ${answer.reason}`, true);
    if (answer.status !== 200) throw new TokenError(`token endpoint ${answer.status}: ${answer.body.slice(0, 200)}`, answer.status >= 500 || answer.status === 429);
    let parsed: { access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(answer.body) as typeof parsed;
    } catch {
      throw new TokenError("token endpoint answered something other than JSON", true);
    }
    if (typeof parsed.access_token !== "string" || typeof parsed.expires_in !== "number") throw new TokenError("token endpoint answer has no access_token / expires_in", true);
    const lifeMs = parsed.expires_in * 1000;
    this.current = { token: parsed.access_token, refreshAtMs: this.now() + lifeMs - Math.min(60_000, lifeMs / 10) };
    return parsed.access_token;
  }
}
