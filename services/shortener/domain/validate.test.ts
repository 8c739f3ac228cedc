import { describe, expect, it } from "vitest";
import { LinkError, type LinkReason } from "./errors.js";
import { parseBlocklist } from "../env.js";
import { validateAlias, validateCode, validateExpiry, validateLongUrl, type UrlPolicy } from "./validate.js";

const policy: UrlPolicy = {
  ownHosts: ["sb.example", "localhost"],
  blockedDomains: parseBlocklist("# test\nphish.example\nevil.test\n*.wild.example\nпример.com\n"),
};

function reasonOf(f: () => unknown): { reason: LinkReason | undefined; field: string | undefined; message: string } | "ok" {
  try {
    f();
    return "ok";
  } catch (e) {
    if (!(e instanceof LinkError)) throw e;
    expect(e.kind).toBe("InvalidArgument");
    expect(e.message.length).toBeGreaterThan(10);
    return { reason: e.reason, field: e.details.field, message: e.message };
  }
}

describe("long_url: hostile inputs are refused with a reason", () => {
  const cases: [string, string, LinkReason][] = [
    ["empty", "", "URL_INVALID"],
    ["javascript: scheme", "javascript:alert(1)", "URL_SCHEME_NOT_ALLOWED"],
    ["JavaScript: mixed case", "JaVaScRiPt:alert(document.cookie)", "URL_SCHEME_NOT_ALLOWED"],
    ["data: URL", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "URL_SCHEME_NOT_ALLOWED"],
    ["file: URL", "file:///etc/passwd", "URL_SCHEME_NOT_ALLOWED"],
    ["ftp: URL", "ftp://example.com/file", "URL_SCHEME_NOT_ALLOWED"],
    ["vbscript:", "vbscript:msgbox(1)", "URL_SCHEME_NOT_ALLOWED"],
    ["relative path", "/just/a/path", "URL_INVALID"],
    ["protocol-relative", "//example.com/x", "URL_INVALID"],
    ["bare host", "example.com/path", "URL_INVALID"],
    ["http without slashes", "http:example.com", "URL_INVALID"],
    ["leading space (tab smuggling)", " https://example.com", "URL_INVALID"],
    ["embedded newline", "https://exa\nmple.com/", "URL_INVALID"],
    ["10 KB URL", `https://example.com/${"a".repeat(10_240)}`, "URL_TOO_LONG"],
    ["2,049 characters", `https://example.com/${"a".repeat(2049 - 20)}`, "URL_TOO_LONG"],
    ["userinfo user:pass", "https://user:pass@example.com/", "URL_HAS_CREDENTIALS"],
    ["userinfo user only", "https://admin@example.com/", "URL_HAS_CREDENTIALS"],
    ["userinfo disguising host", "https://www.bank.com@evil.example/", "URL_HAS_CREDENTIALS"],
    ["our own host", "https://sb.example/abc1234", "URL_SELF_REFERENCE"],
    ["our own host, upper case + trailing dot + port", "HTTP://SB.EXAMPLE.:8443/x", "URL_SELF_REFERENCE"],
    ["subdomain of our host", "https://www.sb.example/x", "URL_SELF_REFERENCE"],
    ["blocklisted domain", "https://phish.example/login", "URL_DOMAIN_BLOCKED"],
    ["subdomain of a blocklisted domain", "https://secure.login.phish.example/", "URL_DOMAIN_BLOCKED"],
    ["blocklisted, upper case", "https://EVIL.TEST/", "URL_DOMAIN_BLOCKED"],
    ["wildcard-listed domain", "https://a.wild.example/", "URL_DOMAIN_BLOCKED"],
    ["unicode host on a (unicode-listed) blocked domain", "https://ПРИМЕР.com/", "URL_DOMAIN_BLOCKED"],
    ["punycode spelling of a blocked unicode domain", "https://www.xn--e1afmkfd.com/", "URL_DOMAIN_BLOCKED"],
    ["loopback IPv4", "http://127.0.0.1:8080/admin", "URL_DOMAIN_BLOCKED"],
    ["loopback in decimal form", "http://2130706433/", "URL_DOMAIN_BLOCKED"],
    ["loopback in hex form", "http://0x7f.0.0.1/", "URL_DOMAIN_BLOCKED"],
    ["private 10/8", "http://10.1.2.3/", "URL_DOMAIN_BLOCKED"],
    ["private 192.168/16", "http://192.168.0.1/router", "URL_DOMAIN_BLOCKED"],
    ["cloud metadata link-local", "http://169.254.169.254/latest/meta-data/", "URL_DOMAIN_BLOCKED"],
    ["IPv6 loopback", "http://[::1]/", "URL_DOMAIN_BLOCKED"],
    ["IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]/", "URL_DOMAIN_BLOCKED"],
    ["IPv6 unique local", "http://[fd00::1]/", "URL_DOMAIN_BLOCKED"],
    ["localhost name (also ours)", "http://localhost:3000/", "URL_SELF_REFERENCE"],
    ["single-label host", "http://intranet/", "URL_INVALID"],
    ["invalid host characters", "https://exa mple.com/", "URL_INVALID"],
    ["empty host", "https:///path", "URL_INVALID"],
  ];
  it.each(cases)("%s", (_name, input, reason) => {
    const r = reasonOf(() => validateLongUrl(input, policy));
    expect(r).not.toBe("ok");
    if (r !== "ok") {
      expect(r.reason).toBe(reason);
      expect(r.field).toBe("long_url");
    }
  });

  it("has at least 25 hostile cases", () => expect(cases.length).toBeGreaterThanOrEqual(25));
});

describe("long_url: accepted and normalised", () => {
  it.each([
    ["https://example.com/a?b=c#d", "https://example.com/a?b=c#d"],
    ["HTTPS://Example.COM", "https://example.com/"],
    ["http://bücher.example/straße", "http://xn--bcher-kva.example/stra%C3%9Fe"],
    ["https://8.8.8.8/dns", "https://8.8.8.8/dns"],
    ["https://[2001:4860:4860::8888]/", "https://[2001:4860:4860::8888]/"],
    ["https://notphish.example/", "https://notphish.example/"],
    ["https://sb.example.org/", "https://sb.example.org/"],
  ])("%s -> %s", (input, out) => {
    expect(validateLongUrl(input, policy)).toBe(out);
  });

  it("exactly 2,048 characters is fine", () => {
    const u = `https://example.com/${"a".repeat(2048 - 20)}`;
    expect(u.length).toBe(2048);
    expect(validateLongUrl(u, policy)).toBe(u);
  });
});

describe("custom_alias", () => {
  const cases: [string, string, LinkReason][] = [
    ["too short", "abc", "ALIAS_INVALID"],
    ["too long", "a".repeat(33), "ALIAS_INVALID"],
    ["path traversal", "../etc", "ALIAS_INVALID"],
    ["encoded traversal", "%2e%2e%2fx", "ALIAS_INVALID"],
    ["slash", "a/b/c", "ALIAS_INVALID"],
    ["dot", "my.link", "ALIAS_INVALID"],
    ["space", "my link", "ALIAS_INVALID"],
    ["unicode", "caf\u00e9-link", "ALIAS_INVALID"],
    ["7-char alphanumeric (generated code shape)", "abC1234", "ALIAS_INVALID"],
    ["7-char all letters", "mylinks", "ALIAS_INVALID"],
    ["reserved api", "api_", "ALIAS_INVALID"], // 4 chars but "api_" is not reserved -> see below
    ["reserved healthz (also the generated-code shape: reserved is the reason)", "healthz", "ALIAS_RESERVED"],
    ["reserved metrics", "metrics", "ALIAS_RESERVED"],
    ["reserved about (a path the gateway keeps)", "About", "ALIAS_RESERVED"],
    ["reserved api (shorter than 4)", "api", "ALIAS_RESERVED"],
    ["reserved admin (case-insensitive)", "ADMIN", "ALIAS_RESERVED"],
    ["reserved readyz", "readyz", "ALIAS_RESERVED"],
    ["reserved static", "Static", "ALIAS_RESERVED"],
    ["reserved switchboard", "switchboard", "ALIAS_RESERVED"],
  ];
  it.each(cases.filter(([n]) => n !== "reserved api"))("%s", (_n, alias, reason) => {
    const r = reasonOf(() => validateAlias(alias));
    expect(r).not.toBe("ok");
    if (r !== "ok") {
      expect(r.reason).toBe(reason);
      expect(r.field).toBe("custom_alias");
    }
  });

  it.each(["my-link", "my_lnk", "mylink12", "promo-2025", "abcd", "a".repeat(32), "ab-c123", "api_"])("accepts %s", (a) => {
    expect(validateAlias(a)).toBe(a);
  });

  it("generated codes and aliases are disjoint: every accepted alias fails the generated shape", () => {
    for (const a of ["my-link", "x_y_z_1", "abcdefgh", "abcdef"]) {
      expect(/^[A-Za-z0-9]{7}$/.test(validateAlias(a))).toBe(false);
    }
  });
});

describe("expire_time and codes", () => {
  const now = new Date("2025-01-01T00:00:00Z");
  it("refuses the past, now, and more than 10 years ahead", () => {
    for (const d of [new Date("2024-12-31T23:59:59Z"), now, new Date("2035-01-03T00:00:00Z")]) {
      const r = reasonOf(() => validateExpiry(d, now));
      expect(r !== "ok" && r.reason).toBe("EXPIRE_TIME_INVALID");
    }
  });
  it("accepts tomorrow and 9 years ahead", () => {
    expect(validateExpiry(new Date("2025-01-02T00:00:00Z"), now).toISOString()).toBe("2025-01-02T00:00:00.000Z");
    expect(validateExpiry(new Date("2034-01-01T00:00:00Z"), now)).toBeInstanceOf(Date);
  });
  it("codes: 1-32 of [A-Za-z0-9_-]", () => {
    expect(validateCode("abC1234")).toBe("abC1234");
    for (const bad of ["", "../x", "a".repeat(33), "a b"]) expect(reasonOf(() => validateCode(bad))).not.toBe("ok");
  });
});

describe("long_url: non-public hosts (issue 8, finding 9)", () => {
  // Without "localhost" among our own hosts, so localhost names meet the internal-name rule.
  const strict: UrlPolicy = { ...policy, ownHosts: ["sb.example"] };
  const blocked = (url: string) => {
    const r = reasonOf(() => validateLongUrl(url, strict));
    return r === "ok" ? "ok" : r.reason;
  };
  it.each([
    // every IPv4 loopback spelling the WHATWG parser accepts
    "http://127.0.0.1/", "http://127.1/", "http://127.0.1/", "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://0x7f000001/",
    "http://2130706433/", "http://017700000001/", "http://127.000.000.001/", "http://127.0.0.1./", "http://%31%32%37.0.0.1/",
    "http://\u2460\u2461\u2466.0.0.1/", "http://\uff10x7f.1/", "http://127.255.255.254/", "http://0/", "http://0.0.0.0/",
    // other non-public IPv4
    "http://192.0.2.1/", "http://198.51.100.7/", "http://203.0.113.9/", "http://192.0.0.8/", "http://100.100.100.200/",
    "http://255.255.255.255/", "http://240.0.0.1/", "http://172.31.255.255/", "http://198.18.0.1/",
  ])("IPv4 %s", (url) => expect(blocked(url)).toBe("URL_DOMAIN_BLOCKED"));

  it.each([
    ["IPv4-compatible loopback", "http://[::127.0.0.1]/"],
    ["IPv4-compatible public (deprecated form)", "http://[::8.8.8.8]/"],
    ["IPv4-translated loopback", "http://[::ffff:0:127.0.0.1]/"],
    ["IPv4-mapped hex", "http://[::ffff:7f00:1]/"],
    ["IPv4-mapped private", "http://[::ffff:10.0.0.1]/"],
    ["NAT64 loopback", "http://[64:ff9b::127.0.0.1]/"],
    ["NAT64 metadata", "http://[64:ff9b::a9fe:a9fe]/"],
    ["local-use NAT64", "http://[64:ff9b:1::8.8.8.8]/"],
    ["6to4 of loopback", "http://[2002:7f00:1::]/"],
    ["6to4 of 192.168", "http://[2002:c0a8:101::1]/"],
    ["Teredo with a private server", "http://[2001:0:a00:1::1]/"],
    ["Teredo with a loopback client", "http://[2001:0:808:808:0:0:80ff:fffe]/"],
    ["discard-only", "http://[100::1]/"],
    ["documentation 2001:db8::/32", "http://[2001:db8::1]/"],
    ["documentation 3fff::/20", "http://[3fff:0::1]/"],
    ["IETF protocol assignments", "http://[2001:2::1]/"],
    ["ULA fc00::/7", "http://[fc00::1]/"],
    ["ULA fd", "http://[fdab:cdef::1]/"],
    ["link-local", "http://[fe80::1]/"],
    ["link-local upper half", "http://[febf::1]/"],
    ["site-local", "http://[fec0::1]/"],
    ["multicast", "http://[ff02::1]/"],
    ["loopback long form", "http://[0:0:0:0:0:0:0:1]/"],
    ["unspecified", "http://[::]/"],
    ["reserved (outside 2000::/3)", "http://[4000::1]/"],
  ])("IPv6 %s: %s", (_n, url) => expect(blocked(url)).toBe("URL_DOMAIN_BLOCKED"));

  it.each([
    "http://localhost.localdomain/", "http://LOCALHOST.LOCALDOMAIN./", "http://foo.localhost/", "http://printer.local/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://ip-10-0-0-1.ec2.internal/", "http://router.home.arpa/",
    "http://1.0.0.127.in-addr.arpa/", "http://wiki.corp/", "http://nas.lan/", "http://box.home/", "http://portal.intranet/",
    "http://127.0.0.1.nip.io/", "http://app.10.0.0.1.nip.io/", "http://app-127-0-0-1.nip.io/", "http://magic-192-168-1-1.sslip.io/",
    "http://127.0.0.1.xip.io/", "http://app-7f000001.nip.io/", "http://--1.sslip.io/", "http://nip.io.nip.io/",
    "http://10.0.0.1.example.com/", "http://svc-172-16-0-1.example.org/", "http://readme.localtest.me/", "http://lvh.me/",
    "http://127.0.0.1.traefik.me/",
  ])("internal name %s", (url) => expect(blocked(url)).toBe("URL_DOMAIN_BLOCKED"));

  it.each([
    ["https://[2001:4860:4860::8888]/", "https://[2001:4860:4860::8888]/"],
    ["https://[::ffff:8.8.8.8]/", "https://[::ffff:808:808]/"],
    ["https://[64:ff9b::8.8.8.8]/", "https://[64:ff9b::808:808]/"],
    ["https://[2002:808:808::1]/", "https://[2002:808:808::1]/"],
    ["https://[2a00:1450:4001:80b::200e]/", "https://[2a00:1450:4001:80b::200e]/"],
    ["https://8.8.4.4.nip.io/", "https://8.8.4.4.nip.io/"],
    ["https://app-1-2-3-4.sslip.io/", "https://app-1-2-3-4.sslip.io/"],
    ["https://1.1.1.1/", "https://1.1.1.1/"],
    ["https://deadbeef.example.com/", "https://deadbeef.example.com/"],
    ["https://local.example.com/", "https://local.example.com/"],
    ["https://internal.example.com/", "https://internal.example.com/"],
    ["https://v2-10-0-1.example.com/", "https://v2-10-0-1.example.com/"],
  ])("public %s is accepted", (input, out) => expect(validateLongUrl(input, policy)).toBe(out));

  it("refusePrivateIps: false lets internal hosts through (development), single-label names stay invalid", () => {
    const open = { ...policy, ownHosts: [], refusePrivateIps: false };
    expect(validateLongUrl("http://[::127.0.0.1]/", open)).toBe("http://[::7f00:1]/");
    expect(validateLongUrl("http://metadata.google.internal/", open)).toBe("http://metadata.google.internal/");
    expect(validateLongUrl("http://localhost:3000/", open)).toBe("http://localhost:3000/");
    expect(reasonOf(() => validateLongUrl("http://intranet/", open))).toMatchObject({ reason: "URL_INVALID" });
  });
});
