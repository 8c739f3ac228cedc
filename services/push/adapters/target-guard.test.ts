import { createServer, get, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { isDomainError } from "../../../platform/errors.js";
import { createGuardedLookup, createTargetGuard, type Lookup } from "./target-guard.js";

/** A resolver answering from a table (names missing from it do not exist). */
const table = (answers: Record<string, string[]>): Lookup => async (host) => {
  const a = answers[host];
  if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  return a.map((address) => ({ address }));
};

const hosts = ["hooks.example.com", "*.rebind.example", "93.184.215.14", "127.0.0.1", "localhost", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"];
const guard = createTargetGuard(
  { hosts, allowPrivate: false },
  {
    lookup: table({
      "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
      "a.rebind.example": ["93.184.215.14", "127.0.0.1"],
      "b.rebind.example": ["::ffff:10.0.0.1"],
      localhost: ["127.0.0.1", "::1"],
    }),
  },
);

describe("createTargetGuard", () => {
  it.each([
    ["https://hooks.example.com/x", undefined],
    ["https://93.184.215.14/x", undefined],
    ["https://127.0.0.1/x", "internal address"],
    ["https://2130706433/x", "internal address"],
    ["https://10.0.0.1/x", "internal address"],
    ["https://169.254.169.254/latest/meta-data", "internal address"],
    ["https://[::1]/x", "internal address"],
    ["https://[::ffff:127.0.0.1]/x", "internal address"],
    ["https://localhost/x", "resolves to an internal address (127.0.0.1)"],
    ["https://a.rebind.example/x", "resolves to an internal address (127.0.0.1)"],
    ["https://b.rebind.example/x", "resolves to an internal address (::ffff:10.0.0.1)"],
    ["https://c.rebind.example/x", "does not resolve"],
    ["https://evil.example.com/x", "not on this server's allowlist"],
    ["https://192.168.0.1/x", "not on this server's allowlist"],
    ["http://hooks.example.com/x", "only https"],
    ["https://u:p@hooks.example.com/x", "credentials"],
  ])("%s -> %s", async (url, reason) => {
    const got = await guard(new URL(url));
    if (reason === undefined) expect(got).toBeUndefined();
    else expect(got).toContain(reason);
  });

  it("allowPrivate lets allowed hosts be internal, and nothing else", async () => {
    const local = createTargetGuard({ hosts: ["127.0.0.1", "localhost"], allowPrivate: true }, { lookup: table({}) });
    expect(await local(new URL("https://127.0.0.1:8443/hook"))).toBeUndefined();
    expect(await local(new URL("https://localhost/hook"))).toBeUndefined();
    expect(await local(new URL("https://10.0.0.1/hook"))).toContain("allowlist");
  });

  it("an empty allowlist refuses everything", async () => {
    expect(await createTargetGuard({ hosts: [], allowPrivate: true })(new URL("https://hooks.example.com/"))).toContain("allows no hosts");
  });

  it("a resolver that cannot answer now is Unavailable (retry), not a verdict", async () => {
    const failing = createTargetGuard({ hosts: ["*.example.com"], allowPrivate: false }, {
      lookup: async () => {
        throw Object.assign(new Error("queryA ETIMEOUT"), { code: "EAI_AGAIN" });
      },
    });
    const err = await failing(new URL("https://x.example.com/")).catch((e: unknown) => e);
    expect(isDomainError(err) && err.kind).toBe("Unavailable");
    const slow = createTargetGuard({ hosts: ["*.example.com"], allowPrivate: false }, { lookup: () => new Promise(() => {}), timeoutMs: 50 });
    const err2 = await slow(new URL("https://x.example.com/")).catch((e: unknown) => e);
    expect(isDomainError(err2) && err2.kind).toBe("Unavailable");
  });

  it("the system resolver: localhost resolves to loopback and is refused", async () => {
    const real = createTargetGuard({ hosts: ["localhost"], allowPrivate: false });
    expect(await real(new URL("https://localhost/x"))).toContain("resolves to an internal address");
  });
});

describe("createGuardedLookup (the lookup the HTTP client connects with)", () => {
  const fetchVia = (port: number, allowPrivate: boolean) =>
    new Promise<string>((resolve) => {
      const req = get({ host: "localhost", port, path: "/", lookup: createGuardedLookup({ allowPrivate }) }, (res) => {
        res.resume();
        resolve(String(res.statusCode));
      });
      req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });

  it("a name resolving to loopback is never connected to unless private targets are allowed", async () => {
    let hits = 0;
    const server: Server = createServer((_, res) => {
      hits++;
      res.end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      expect(await fetchVia(port, false)).toBe("EINTERNALTARGET");
      expect(hits).toBe(0);
      expect(await fetchVia(port, true)).toBe("200");
      expect(hits).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
