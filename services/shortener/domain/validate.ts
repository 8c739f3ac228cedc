/**
 * URL, alias, expiry and code validation for the shortener. Pure: no I/O (the blocklist and
 * our own hosts come in as a UrlPolicy). Every refusal is a LinkError (InvalidArgument) naming
 * the field and the reason.
 *
 * long_url: required; at most 2,048 characters (before and after normalisation); no whitespace
 *   or control characters; absolute; scheme http or https only; no user:password; a host that
 *   is a public DNS name (IDN hosts are normalised to punycode with domainToASCII; internal
 *   names such as localhost, *.local, *.internal, metadata.google.internal and names spelling a
 *   private address like 127.0.0.1.nip.io refused) or a public IP literal (every non-public
 *   IPv4 and IPv6 form refused, IPv6 forms carrying an IPv4 judged by it: public-address.ts);
 *   not one of our own hosts or their subdomains (redirect loop); not on the blocklist (a listed
 *   domain blocks its subdomains too). The stored URL is the normalised href.
 * custom_alias and codes: the links grammar (services/links/code-grammar.ts), which the
 *   gateway's redirect door shares: 4..32 characters of [A-Za-z0-9_-], not the 7-character shape
 *   of generated codes, not a reserved word (case-insensitive).
 * expire_time: strictly in the future and at most 10 years ahead.
 */
import { domainToASCII } from "node:url";
import { isIP } from "node:net";
import { aliasProblem, CODE_CHARSET_TEXT, CODE_MAX_LENGTH, isCodeShaped } from "../../links/code-grammar.js";
import { badField, refuse } from "./errors.js";
import { internalNameReason, isNonPublicIp } from "./public-address.js";

export { isNonPublicIp } from "./public-address.js";

export const MAX_URL_LENGTH = 2048;
export const MAX_EXPIRY_YEARS = 10;
/** now + 10 calendar years (UTC). */
export function maxExpiry(now: Date): Date {
  const d = new Date(now.getTime());
  d.setUTCFullYear(d.getUTCFullYear() + MAX_EXPIRY_YEARS);
  return d;
}

export interface UrlPolicy {
  /** Our own hosts (lower-case ASCII, no port); their subdomains count too. */
  readonly ownHosts: readonly string[];
  /** Blocked domains (lower-case ASCII); their subdomains are blocked too. */
  readonly blockedDomains: ReadonlySet<string>;
  /** Refuse IP literals in loopback/private/link-local ranges (default true). */
  readonly refusePrivateIps?: boolean;
}

/** Returns the normalised URL (href with punycode host) or throws a LinkError. */
export function validateLongUrl(raw: string, policy: UrlPolicy, field = "long_url"): string {
  if (raw === "") throw refuse("URL_INVALID", field, "is required");
  if (raw.length > MAX_URL_LENGTH) throw refuse("URL_TOO_LONG", field, `is ${raw.length} characters; at most ${MAX_URL_LENGTH} allowed`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f-\u009f\u2028\u2029\ufeff]/.test(raw)) {
    throw refuse("URL_INVALID", field, "must not contain whitespace or control characters");
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(raw);
  if (!scheme) throw refuse("URL_INVALID", field, "must be an absolute URL (http:// or https://)");
  const s = scheme[1]!.toLowerCase();
  if (s !== "http" && s !== "https") throw refuse("URL_SCHEME_NOT_ALLOWED", field, `scheme "${s}" is not allowed; use http or https`);
  if (!raw.slice(scheme[0].length).startsWith("//")) throw refuse("URL_INVALID", field, "must be an absolute URL (http:// or https://)");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refuse("URL_INVALID", field, "is not a valid URL");
  }
  if (url.username !== "" || url.password !== "") throw refuse("URL_HAS_CREDENTIALS", field, "must not contain user:password credentials");
  if (url.hostname === "") throw refuse("URL_INVALID", field, "has no host");
  const host = normaliseHost(url.hostname);
  if (host === "") throw refuse("URL_INVALID", field, "has an invalid host name");
  if (policy.ownHosts.some((own) => domainMatches(host, own))) {
    throw refuse("URL_SELF_REFERENCE", field, `points at our own short domain (${host}): that would be a redirect loop`);
  }
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  const refusePrivate = policy.refusePrivateIps ?? true;
  if (isIP(bare) !== 0) {
    if (refusePrivate && isNonPublicIp(bare)) {
      throw refuse("URL_DOMAIN_BLOCKED", field, `host ${host} is a loopback, private or otherwise non-public address`);
    }
  } else if (!host.includes(".")) {
    if (host !== "localhost") throw refuse("URL_INVALID", field, `host "${host}" is not a fully qualified domain name`);
    if (refusePrivate) throw refuse("URL_DOMAIN_BLOCKED", field, "host localhost is not allowed");
  } else if (refusePrivate) {
    const internal = internalNameReason(host);
    if (internal) throw refuse("URL_DOMAIN_BLOCKED", field, internal);
  }
  const blocked = blockedBy(host, policy.blockedDomains);
  if (blocked) throw refuse("URL_DOMAIN_BLOCKED", field, `domain ${blocked} is blocked`);
  const href = url.href;
  if (href.length > MAX_URL_LENGTH) throw refuse("URL_TOO_LONG", field, `is ${href.length} characters once normalised; at most ${MAX_URL_LENGTH} allowed`);
  return href;
}

/** Lower-case ASCII (punycode) host without a trailing dot; "" when invalid. */
export function normaliseHost(hostname: string): string {
  if (hostname.startsWith("[")) return hostname.toLowerCase();
  const ascii = domainToASCII(hostname.replace(/\.+$/, ""));
  return ascii.toLowerCase();
}

/** True when host equals domain or is a subdomain of it. */
export function domainMatches(host: string, domain: string): boolean {
  const d = domain.replace(/\.+$/, "").toLowerCase();
  return d !== "" && (host === d || host.endsWith(`.${d}`));
}

/** The blocklist entry matching host or one of its parent domains, if any. */
export function blockedBy(host: string, blocked: ReadonlySet<string>): string | undefined {
  if (blocked.size === 0) return undefined;
  const labels = host.split(".");
  for (let i = 0; i < labels.length; i++) {
    const d = labels.slice(i).join(".");
    if (blocked.has(d)) return d;
  }
  return undefined;
}

/** Validates a custom alias; returns it unchanged. */
export function validateAlias(alias: string, field = "custom_alias"): string {
  const problem = aliasProblem(alias);
  if (problem) throw refuse(problem.reason, field, problem.message);
  return alias;
}

/** Expiry must be strictly after now and at most 10 years ahead. */
export function validateExpiry(expiresAt: Date, now: Date, field = "expire_time"): Date {
  const t = expiresAt.getTime();
  if (!Number.isFinite(t)) throw refuse("EXPIRE_TIME_INVALID", field, "is not a valid time");
  if (t <= now.getTime()) throw refuse("EXPIRE_TIME_INVALID", field, "must be in the future");
  if (t > maxExpiry(now).getTime()) throw refuse("EXPIRE_TIME_INVALID", field, "must be at most 10 years ahead");
  return expiresAt;
}

/** Link codes in requests: code-shaped (reserved words simply name no link). */
export function validateCode(code: string, field = "code"): string {
  if (!isCodeShaped(code)) throw badField(field, `must be 1-${CODE_MAX_LENGTH} characters of ${CODE_CHARSET_TEXT}`);
  return code;
}

/** Idempotency keys and bulk item ids: 1..128 printable ASCII characters. */
export function isPrintableKey(s: string): boolean {
  return s.length >= 1 && s.length <= 128 && /^[\x20-\x7e]+$/.test(s);
}

export function validateIdempotencyKey(key: string, field = "idempotency_key"): string {
  if (!isPrintableKey(key)) throw badField(field, "must be 1-128 printable ASCII characters");
  return key;
}
