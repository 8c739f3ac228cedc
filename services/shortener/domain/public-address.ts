/**
 * Is a link target's host on the public Internet? Pure: literal addresses and names are judged
 * by their spelling only (no DNS), so a name that resolves somewhere private by its own DNS is
 * out of reach here; what can be recognised from the text is refused.
 *
 * IPv4: refused unless globally reachable per the IANA special-purpose registry (this host,
 * private, CGNAT, loopback, link-local, IETF protocol assignments, documentation, benchmarking,
 * 6to4 relay anycast, multicast, reserved, broadcast).
 * IPv6: only global unicast (2000::/3) outside its special blocks (IETF protocol assignments
 * 2001::/23, documentation 2001:db8::/32 and 3fff::/20) is public; forms that carry an IPv4
 * address (mapped, translated, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo) are judged by the
 * IPv4 they carry. Everything outside 2000::/3 is refused (unspecified, loopback,
 * IPv4-compatible, discard 100::/64, local NAT64, ULA, link-local, site-local, multicast).
 * Names: see `internalNameReason`.
 */
import { isIP } from "node:net";

type Octets = readonly [number, number, number, number];

/** Loopback, private, link-local, documentation, multicast, reserved... (IPv4 or IPv6 text). */
export function isNonPublicIp(ip: string): boolean {
  const kind = isIP(ip);
  if (kind === 4) return isNonPublicIpv4(ip.split(".").map(Number) as unknown as Octets);
  if (kind === 6) {
    const groups = ipv6Groups(ip);
    return groups === undefined || isNonPublicIpv6(groups);
  }
  return true;
}

export function isNonPublicIpv4([a, b, c]: Octets): boolean {
  return (
    a === 0 || a === 10 || a === 127 || a >= 224 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 0 && (c === 0 || c === 2)) ||
    (a === 192 && b === 88 && c === 99) ||
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) ||
    (a === 198 && b === 51 && c === 100) ||
    (a === 203 && b === 0 && c === 113)
  );
}

function isNonPublicIpv6(g: readonly number[]): boolean {
  const v4 = (hi: number, lo: number): Octets => [hi >> 8, hi & 255, lo >> 8, lo & 255];
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (translated): the IPv4 is what gets reached.
  if (zero(0, 5) && g[5] === 0xffff) return isNonPublicIpv4(v4(g[6]!, g[7]!));
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return isNonPublicIpv4(v4(g[6]!, g[7]!));
  // NAT64 well-known prefix 64:ff9b::/96.
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return isNonPublicIpv4(v4(g[6]!, g[7]!));
  // 6to4: 2002:AABB:CCDD::/48 reaches the IPv4 AA.BB.CC.DD.
  if (g[0] === 0x2002) return isNonPublicIpv4(v4(g[1]!, g[2]!));
  // Teredo 2001:0::/32: server IPv4 in bits 32-63, client IPv4 inverted in the last 32 bits.
  if (g[0] === 0x2001 && g[1] === 0) {
    return isNonPublicIpv4(v4(g[2]!, g[3]!)) || isNonPublicIpv4(v4(g[6]! ^ 0xffff, g[7]! ^ 0xffff));
  }
  if (g[0]! >> 13 !== 1) return true; // outside global unicast 2000::/3
  if (g[0] === 0x2001 && g[1]! < 0x200) return true; // IETF protocol assignments 2001::/23
  if (g[0] === 0x2001 && g[1] === 0xdb8) return true; // documentation
  if (g[0] === 0x3fff && g[1]! < 0x1000) return true; // documentation 3fff::/20
  return false;
}

/** The eight 16-bit groups of an IPv6 address (with or without an embedded IPv4 tail). */
export function ipv6Groups(text: string): number[] | undefined {
  let t = text.toLowerCase();
  if (t.includes("%")) return undefined; // zone ids never appear in URLs
  const tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(t);
  let extra: number[] = [];
  if (tail) {
    const o = tail.slice(1).map(Number);
    if (o.some((x) => x > 255)) return undefined;
    extra = [(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!];
    t = t.slice(0, -tail[0].length);
    if (t.endsWith(":") && !t.endsWith("::")) t = t.slice(0, -1);
  }
  const parts = t.split("::");
  if (parts.length > 2) return undefined;
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((h) => (/^[0-9a-f]{1,4}$/.test(h) ? parseInt(h, 16) : NaN)));
  const head = parse(parts[0]!);
  const rest = parts.length === 2 ? parse(parts[1]!) : [];
  const known = head.length + rest.length + extra.length;
  if (parts.length === 1 ? known !== 8 : known > 7) return undefined;
  const groups = [...head, ...Array<number>(8 - known).fill(0), ...rest, ...extra];
  return groups.some((x) => Number.isNaN(x)) ? undefined : groups;
}

/**
 * Top-level names that never lead to a public site: RFC 6761 (localhost), RFC 6762 (local and
 * the names its appendix G lists as in private use: intranet, internal, private, corp, home,
 * lan), ICANN's private-use `internal`, `localdomain` (as in localhost.localdomain) and arpa
 * (reverse DNS and home.arpa, never a web host).
 */
const INTERNAL_TLDS: ReadonlySet<string> = new Set([
  "localhost", "localdomain", "local", "internal", "intranet", "private", "corp", "home", "lan", "arpa",
]);

/**
 * Public wildcard DNS services that answer every name with an address spelled in it
 * (127.0.0.1.nip.io, app-10-0-0-1.sslip.io, c0a80001.nip.io) or with loopback outright.
 */
const ADDRESS_ECHO_DOMAINS: readonly string[] = ["nip.io", "sslip.io", "xip.io", "traefik.me", "local.gd"];
const LOOPBACK_DOMAINS: readonly string[] = ["localtest.me", "lvh.me", "vcap.me", "fuf.me", "localho.st"];

const endsWithDomain = (host: string, d: string): boolean => host === d || host.endsWith(`.${d}`);

/**
 * Why a (lower-case ASCII, no trailing dot) DNS name is internal, or undefined when it looks
 * public. Refused: single-label names; internal top-level names; the loopback wildcard
 * domains; names embedding a non-public IPv4 as dotted labels (10.0.0.1.example.com) or dashed
 * (ip-10-0-0-1.ec2.internal, app-127-0-0-1.sslip.io); on the address-echo services, any name
 * that does not spell a public IPv4 (their answer for other names is theirs to choose).
 */
export function internalNameReason(host: string): string | undefined {
  const labels = host.split(".");
  if (labels.length < 2) return `host "${host}" is not a fully qualified domain name`;
  const tld = labels[labels.length - 1]!;
  if (INTERNAL_TLDS.has(tld)) return `host ${host} is an internal name (.${tld})`;
  if (LOOPBACK_DOMAINS.some((d) => endsWithDomain(host, d))) return `host ${host} always resolves to loopback`;
  const embedded = embeddedIpv4s(labels);
  const hidden = embedded.find(isNonPublicIpv4);
  if (hidden) return `host ${host} embeds the non-public address ${hidden.join(".")}`;
  const echo = ADDRESS_ECHO_DOMAINS.find((d) => endsWithDomain(host, d));
  if (echo) {
    const hex = labels.flatMap((l) => l.split("-")).filter((p) => /^[0-9a-f]{8}$/.test(p)).map(hexOctets);
    if (hex.some(isNonPublicIpv4) || embedded.length + hex.length === 0) {
      return `host ${host} (${echo}) does not name a public address`;
    }
  }
  return undefined;
}

/** Every IPv4 spelled in the name: four decimal octets in a row, as labels or dash-separated. */
function embeddedIpv4s(labels: readonly string[]): Octets[] {
  const out: Octets[] = [];
  const runs = (parts: readonly string[]) => {
    for (let i = 0; i + 4 <= parts.length; i++) {
      const four = parts.slice(i, i + 4);
      if (four.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) out.push(four.map(Number) as unknown as Octets);
    }
  };
  runs(labels);
  for (const l of labels) runs(l.split("-"));
  return out;
}

function hexOctets(h: string): Octets {
  const n = parseInt(h, 16);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}
