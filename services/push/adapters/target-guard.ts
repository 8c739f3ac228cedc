/**
 * The DNS half of the target policy (domain/targets.ts). Registration calls it once; providers
 * call it again right before each request, because a name that resolved to a public address at
 * registration can resolve to 127.0.0.1 later (DNS rebinding). Every address of the name is
 * checked (lookup {all: true}): a resolver may hand the HTTP client any one of them.
 *
 * Returns the reason a URL must not be called, or undefined when it may be. A resolver that
 * cannot answer now (timeout, SERVFAIL) throws Unavailable: retry later, neither allowed nor refused.
 */
import { lookup as dnsLookupCb, type LookupAddress, type LookupOptions } from "node:dns";
import { lookup as dnsLookup } from "node:dns/promises";
import type { LookupFunction } from "node:net";
import { DomainError } from "../../../platform/errors.js";
import { hostAllowed, isInternalAddress, literalAddress, normalHost, type TargetPolicy } from "../domain/targets.js";

export type TargetGuard = (url: URL) => Promise<string | undefined>;

export type Lookup = (host: string) => Promise<readonly { address: string }[]>;

export interface TargetGuardOptions {
  /** The resolver (default node:dns lookup, all addresses, in the resolver's order). */
  readonly lookup?: Lookup;
  /** A resolution taking longer is Unavailable (default 5 s). */
  readonly timeoutMs?: number;
}

/** Names that fail this way do not exist: a refusal, not an outage. */
const NO_SUCH_NAME = new Set(["ENOTFOUND", "ENODATA", "EAI_NONAME", "EAI_NODATA"]);

const systemLookup: Lookup = (host) => dnsLookup(host, { all: true, verbatim: true });

export function createTargetGuard(policy: TargetPolicy, options: TargetGuardOptions = {}): TargetGuard {
  const lookup = options.lookup ?? systemLookup;
  const timeoutMs = options.timeoutMs ?? 5_000;
  return async (url) => {
    // Plain http only where private targets are allowed: local provider test servers.
    const httpOk = policy.allowPrivate && url.protocol === "http:";
    if (url.protocol !== "https:" && !httpOk) return `only https targets are allowed (got ${url.protocol.replace(/:$/, "")})`;
    if (url.username || url.password) return "targets must not carry credentials";
    const host = normalHost(url.hostname);
    if (policy.hosts.length === 0) return "this server allows no hosts for this kind of target";
    if (!hostAllowed(host, policy.hosts)) return `host ${host} is not on this server's allowlist`;
    if (policy.allowPrivate) return undefined;
    const literal = literalAddress(host);
    if (literal !== undefined) return isInternalAddress(literal) ? `host ${host} is an internal address` : undefined;
    const addresses = await resolve(lookup, host, timeoutMs);
    if (addresses.length === 0) return `host ${host} does not resolve`;
    const internal = addresses.find((a) => isInternalAddress(a.address));
    return internal ? `host ${host} resolves to an internal address (${internal.address})` : undefined;
  };
}

async function resolve(lookup: Lookup, host: string, timeoutMs: number): Promise<readonly { address: string }[]> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      lookup(host),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DomainError("Unavailable", `resolving ${host} timed out; retry`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && NO_SUCH_NAME.has(code)) return [];
    if (err instanceof DomainError) throw err;
    throw new DomainError("Unavailable", `resolving ${host} failed (${typeof code === "string" ? code : "error"}); retry`, {}, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A `lookup` for the HTTP client (http.Agent / https.Agent `lookup` option, or a socket's) that
 * fails for a name resolving to an internal address. The guard above checks before a request;
 * this checks the very answer the connection uses, so a resolver that answers differently
 * between the check and the connect (DNS rebinding with a short TTL) gets nowhere.
 */
export function createGuardedLookup(policy: Pick<TargetPolicy, "allowPrivate">): LookupFunction {
  const guarded = (hostname: string, options: LookupOptions, callback: (...args: unknown[]) => void): void => {
    dnsLookupCb(hostname, { ...options, all: true }, (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => {
      if (err) return callback(err);
      const internal = policy.allowPrivate ? undefined : addresses.find((a) => isInternalAddress(a.address));
      if (internal) {
        return callback(Object.assign(new Error(`${hostname} resolves to an internal address (${internal.address}): refused`), { code: "EINTERNALTARGET" }));
      }
      if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} does not resolve`), { code: "ENOTFOUND" }));
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
  return guarded as unknown as LookupFunction;
}
