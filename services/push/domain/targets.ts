/**
 * Target policy (SSRF): which URLs the push service may call for a user's device. A user chooses
 * a webhook URL or a Web Push endpoint, so without a policy any user could make the service call
 * an address of their choosing (cloud metadata, an admin port on loopback, the internal network).
 *
 * Two rules, both required: the host is on the operator's allowlist (exact hosts or "*.suffix"),
 * and the host is not, and does not resolve to, an internal address. This file holds the pure
 * part (allowlist matching, address classification, literal IPs in any spelling); the DNS part
 * is adapters/target-guard.ts, which providers call again at send time (DNS rebinding).
 */
import { isIP } from "node:net";
import type { PushConfig } from "../../../platform/config.js";
import { ipv6Groups, isNonPublicIp } from "../../shortener/domain/public-address.js";

export interface TargetPolicy {
  /** Exact hosts ("fcm.googleapis.com", "127.0.0.1", "::1") or "*.suffix" (subdomains of suffix, not suffix itself). */
  readonly hosts: readonly string[];
  /** Skip the internal-address rule (tests with local endpoints); the allowlist still applies. */
  readonly allowPrivate: boolean;
}

/** The policies of the two user-chosen targets, from config.push (registration and providers share them). */
export function targetPolicies(push: Pick<PushConfig, "webPushHosts" | "webhookHosts" | "allowPrivateTargets">): {
  readonly webPush: TargetPolicy;
  readonly webhook: TargetPolicy;
} {
  return {
    webPush: { hosts: push.webPushHosts, allowPrivate: push.allowPrivateTargets },
    webhook: { hosts: push.webhookHosts, allowPrivate: push.allowPrivateTargets },
  };
}

/** A URL's hostname as the allowlist and the resolver see it: lower case, no brackets, no trailing dot. */
export function normalHost(hostname: string): string {
  return hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
}

export function hostAllowed(host: string, patterns: readonly string[]): boolean {
  const h = normalHost(host);
  const literal = literalAddress(h);
  return patterns.some((p) => {
    if (p.startsWith("*.")) return literal === undefined && h.endsWith(p.slice(1)) && h.length > p.length - 1;
    // Literal addresses compare by value, so "[::1]" and "0:0::1" match an allowed "::1".
    if (literal !== undefined) return literalAddress(p) === literal;
    return h === p;
  });
}

/**
 * The canonical text of a host that is an IP address literal in any spelling the URL parser or
 * the C resolver accepts (dotted, decimal 2130706433, hex 0x7f.1, octal 0177.0.0.1, short 127.1;
 * IPv6 with or without brackets), else undefined (a name).
 */
export function literalAddress(host: string): string | undefined {
  const h = normalHost(host);
  if (isIP(h) === 6) return canonicalIpv6(h);
  const v4 = parseIpv4(h);
  return v4 === undefined ? undefined : v4.join(".");
}

/**
 * Loopback, private, link-local (cloud metadata 169.254.169.254), CGNAT, this-network, multicast,
 * broadcast, reserved and documentation ranges, IPv6 loopback/unspecified/ULA/link-local/
 * multicast, and IPv6 forms carrying an IPv4 (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d,
 * NAT64, 6to4, Teredo). Anything that is not an address at all counts as internal: a caller
 * never gets the benefit of the doubt.
 */
export function isInternalAddress(ip: string): boolean {
  const literal = literalAddress(ip);
  if (literal === undefined) return true;
  return isNonPublicIp(literal);
}

/** inet_aton: 1-4 parts, each decimal, 0x hex or 0 octal; the last part fills the remaining bytes. */
function parseIpv4(h: string): [number, number, number, number] | undefined {
  const parts = h.split(".");
  if (parts.length > 4 || parts.some((p) => p === "")) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) n = parseInt(p, 8);
    else if (/^(0|[1-9][0-9]*)$/.test(p)) n = Number(p);
    else return undefined;
    if (!Number.isSafeInteger(n)) return undefined;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255) || last >= 256 ** (4 - nums.length)) return undefined;
  const out = [...nums];
  for (let i = 4 - nums.length - 1; i >= 0; i--) out.push(Math.floor(last / 256 ** i) % 256);
  return out as [number, number, number, number];
}

function canonicalIpv6(h: string): string | undefined {
  const g = ipv6Groups(h);
  return g === undefined ? undefined : g.map((x) => x.toString(16)).join(":");
}
