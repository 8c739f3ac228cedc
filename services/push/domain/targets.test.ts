import { describe, expect, it } from "vitest";
import { hostAllowed, isInternalAddress, literalAddress } from "./targets.js";

describe("isInternalAddress", () => {
  it.each([
    // IPv4 loopback in every spelling the URL parser or inet_aton accepts
    "127.0.0.1", "127.1", "127.255.255.254", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "0177.0.0.01",
    // this network, private, CGNAT, link-local / metadata, multicast, reserved, broadcast
    "0.0.0.0", "0", "10.0.0.1", "012.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "100.127.255.255",
    "169.254.169.254", "169.254.0.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    // IPv6 loopback, unspecified, ULA, link-local, multicast
    "::1", "[::1]", "0:0:0:0:0:0:0:1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "ff02::1",
    // IPv6 carrying an IPv4: mapped, compatible, translated, NAT64, 6to4
    "::ffff:127.0.0.1", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "::ffff:0:127.0.0.1", "64:ff9b::10.0.0.1", "2002:7f00:1::",
    // not an address at all: never trusted
    "localhost", "example.com", "", "1.2.3.4.5", "256.0.0.1", "::ffff:1.2.3.999",
  ])("%s is internal", (ip) => {
    expect(isInternalAddress(ip)).toBe(true);
  });

  it.each(["93.184.215.14", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.255.0.1", "2606:4700:4700::1111", "[2a00:1450:4001:80b::200e]", "::ffff:8.8.8.8", "0x08080808", "134744072"])(
    "%s is public",
    (ip) => {
      expect(isInternalAddress(ip)).toBe(false);
    },
  );

  it("literal addresses are recognised in any form; names are not literals", () => {
    expect(literalAddress("0x7f.1")).toBe("127.0.0.1");
    expect(literalAddress("2130706433")).toBe("127.0.0.1");
    expect(literalAddress("10.1")).toBe("10.0.0.1");
    expect(literalAddress("[::1]")).toBe("0:0:0:0:0:0:0:1");
    expect(literalAddress("::ffff:127.0.0.1")).toBe("0:0:0:0:0:ffff:7f00:1");
    expect(literalAddress("fcm.googleapis.com")).toBeUndefined();
    expect(literalAddress("1e1")).toBeUndefined();
  });
});

describe("hostAllowed", () => {
  const list = ["fcm.googleapis.com", "*.push.apple.com", "127.0.0.1", "::1"];
  it.each([
    ["fcm.googleapis.com", true],
    ["FCM.googleapis.com.", true],
    ["web.push.apple.com", true],
    ["a.b.push.apple.com", true],
    ["push.apple.com", false],
    ["evilpush.apple.com", false],
    ["push.apple.com.evil.com", false],
    ["fcm.googleapis.com.evil.com", false],
    ["googleapis.com", false],
    ["127.0.0.1", true],
    ["2130706433", true],
    ["127.0.0.2", false],
    ["[::1]", true],
    ["0:0::1", true],
    ["localhost", false],
    ["10.0.0.1", false],
  ])("%s -> %s", (host, ok) => {
    expect(hostAllowed(host, list)).toBe(ok);
  });

  it("a *.suffix pattern never matches a literal address", () => {
    expect(hostAllowed("1.2.3.4", ["*.3.4"])).toBe(false);
  });
});
