/**
 * Acceptance for issue 8 findings 6, 7 and 11 against the real embedded mesh (memory engine, the
 * gateway and every service on loopback gRPC, in this process): the identity that reaches a
 * service is exactly the authenticated one and only when proven; bent or header-breaking JWT
 * subjects are refused with Unauthenticated / 401 (never trimmed into another user, never a 500);
 * tokens without exp or with too long a lifetime are refused; client-sent x-switchboard-* headers
 * are dropped on Connect, gRPC, gRPC-web and REST; the shortener's internal port ignores plain and
 * badly signed identity headers; /readyz names no address.
 */
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { createGrpcClient, type GrpcClient } from "../platform/grpc/client.js";
import { meshKey } from "../platform/identity-assertion.js";
import { mintApiKey } from "../services/apikeys/keys.js";
import { InvalidOwnerError, issueApiKey } from "../services/apikeys/service.js";
import { createApiKeyStore } from "../services/apikeys/store.js";
import { assertionHeaders, TEST_MESH_SECRET } from "../testkit/mesh-identity.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";

const BOB = "idt-bob";
const ALICE = "idt-alice";
const now = () => Math.floor(Date.now() / 1000);
const tokenFor = (sub: string, claims: Record<string, unknown> = { exp: now() + 600 }) => signHs256({ sub, ...claims }, DEV_JWT_SECRET);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let running: Running;
let base: string;
let bobCode: string;
let aliceCode: string;

type Protocol = "connect" | "grpc" | "grpc-web";
const PROTOCOLS: readonly Protocol[] = ["connect", "grpc", "grpc-web"];
const transports = new Map<Protocol, Transport>();
const clientOver = (protocol: Protocol): Client<typeof ShortenerService> => createClient(ShortenerService, transports.get(protocol)!);

function rest(headers: Record<string, string>, body: unknown = { long_url: "https://example.com/idt" }): Promise<Response> {
  return fetch(`${base}/api/v1/shorten`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ConnectError);
  return e as ConnectError;
}

const codesOf = async (protocol: Protocol, user: string): Promise<string[]> =>
  (await clientOver(protocol).listLinks({ pageSize: 100 }, { headers: bearer(tokenFor(user)) })).links.map((l) => l.code);

beforeAll(async () => {
  const config = loadConfig({
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "500",
    SWITCHBOARD_PUBLIC_BASE_URL: "https://sb.example",
    // Known to the test so it can forge validly signed assertions and see the gateway drop them.
    SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
  });
  running = await runEmbedded(config, pino({ level: "silent" }), {
    env: { SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "0", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "0" },
  });
  base = `http://127.0.0.1:${running.gatewayPort}`;
  transports.set("connect", createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
  transports.set("grpc", createGrpcTransport({ baseUrl: base }));
  transports.set("grpc-web", createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1" }));
  const bob = await rest(bearer(tokenFor(BOB)), { long_url: "https://example.com/bob-secret" });
  expect(bob.status).toBe(201);
  bobCode = ((await bob.json()) as { code: string }).code;
  aliceCode = (await clientOver("connect").createLink({ longUrl: "https://example.com/alice" }, { headers: bearer(tokenFor(ALICE)) })).link!.code;
});
afterAll(() => running?.close());

describe("a JWT sub that is not exactly a valid user id never acts as anyone", () => {
  const BENT = ["idt-bob ", " idt-bob", "idt-bob\t", "\tidt-bob"];
  const BREAKS_HEADERS = ["idt-bøb", "idt-bob\r\nx-switchboard-user: idt-bob", "idt-bob\r", "idt-bob\n", "idt-bob\u0000", "日本語"];

  for (const sub of [...BENT, ...BREAKS_HEADERS]) {
    for (const protocol of PROTOCOLS) {
      it(`${protocol}: sub ${JSON.stringify(sub)} -> Unauthenticated, none of bob's links`, async () => {
        const e = await failure(clientOver(protocol).listLinks({}, { headers: bearer(tokenFor(sub)) }));
        expect(Code[e.code]).toBe(Code[Code.Unauthenticated]);
        expect(e.rawMessage).toMatch(/token subject \(sub\) is not a valid user id: 1-256 printable ASCII/);
        expect(e.rawMessage).not.toContain(bobCode);
      });
    }
    it(`REST: sub ${JSON.stringify(sub)} -> 401 JSON, nothing created`, async () => {
      const res = await rest(bearer(tokenFor(sub)));
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("unauthenticated");
      expect(body.error.message).toMatch(/not a valid user id/);
    });
  }

  it("bob's own token still sees bob's link, and only bob has it", async () => {
    for (const protocol of PROTOCOLS) expect(await codesOf(protocol, BOB)).toEqual([bobCode]);
    expect(await codesOf("connect", ALICE)).not.toContain(bobCode);
  });
});

describe("token policy: exp required, lifetime bounded (default 24 h)", () => {
  const cases: readonly [string, Record<string, unknown>, RegExp][] = [
    ["no exp", {}, /token has no expiry \(exp\)/],
    ["no exp, iat only", { iat: now() }, /token has no expiry \(exp\)/],
    ["exp in 2 days", { exp: now() + 2 * 86_400 }, /expires too far in the future: at most 86400 s/],
    ["exp in the year 3000", { exp: 32_503_680_000 }, /expires too far in the future/],
    ["exp - iat of 30 days", { iat: now() - 30 * 86_400, exp: now() + 600 }, /token lifetime \(exp - iat\) is \d+ s: at most 86400 s/],
  ];
  for (const [name, claims, message] of cases) {
    for (const protocol of PROTOCOLS) {
      it(`${protocol}: ${name} -> Unauthenticated`, async () => {
        const e = await failure(clientOver(protocol).listLinks({}, { headers: bearer(tokenFor(BOB, claims)) }));
        expect(Code[e.code]).toBe(Code[Code.Unauthenticated]);
        expect(e.rawMessage).toMatch(message);
      });
    }
    it(`REST: ${name} -> 401`, async () => {
      const res = await rest(bearer(tokenFor(BOB, claims)));
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    });
  }
});

describe("client-sent x-switchboard-* headers are dropped on every protocol", () => {
  // Validly signed with the mesh secret for exactly the method called: only dropping them stops these.
  const forgedFor = (method: (typeof ShortenerService.method)[keyof typeof ShortenerService.method]) => {
    const h: Record<string, string> = { "x-switchboard-user": BOB, "x-switchboard-auth-kind": "user" };
    assertionHeaders(BOB, method).forEach((v, k) => (h[k] = v));
    return h;
  };

  for (const protocol of PROTOCOLS) {
    it(`${protocol}: alice's token with forged bob headers lists alice's links, not bob's`, async () => {
      const res = await clientOver(protocol).listLinks({ pageSize: 100 }, { headers: { ...bearer(tokenFor(ALICE)), ...forgedFor(ShortenerService.method.listLinks) } });
      const codes = res.links.map((l) => l.code);
      expect(codes).toContain(aliceCode);
      expect(codes).not.toContain(bobCode);
    });
    it(`${protocol}: forged headers without credentials -> Unauthenticated`, async () => {
      const e = await failure(clientOver(protocol).listLinks({}, { headers: forgedFor(ShortenerService.method.listLinks) }));
      expect(Code[e.code]).toBe(Code[Code.Unauthenticated]);
      expect(e.rawMessage).toMatch(/needs credentials/);
    });
  }

  it("REST: forged bob headers with alice's token create alice's link; without credentials 401", async () => {
    const forged = forgedFor(ShortenerService.method.createLink);
    const res = await rest({ ...bearer(tokenFor(ALICE)), ...forged });
    expect(res.status).toBe(201);
    const { code } = (await res.json()) as { code: string };
    expect(await codesOf("connect", ALICE)).toContain(code);
    expect(await codesOf("connect", BOB)).toEqual([bobCode]);
    expect((await rest(forged)).status).toBe(401);
  });
});

describe("the shortener's internal port needs the gateway's proof", () => {
  let internal: GrpcClient<typeof ShortenerService>;
  beforeAll(() => {
    internal = createGrpcClient(ShortenerService, `127.0.0.1:${running.grpcPorts.shortener}`, { defaultTimeoutMs: 5_000 });
  });
  afterAll(() => internal?.close());

  const attempts: readonly [string, () => Record<string, string> | Headers][] = [
    ["a plain x-switchboard-user: bob", () => ({ "x-switchboard-user": BOB, "x-switchboard-auth-kind": "user" })],
    ["an assertion signed with a wrong secret", () => assertionHeaders(BOB, ShortenerService.method.listLinks, { key: meshKey("not-the-mesh-secret-0123456789abcdef") })],
    ["an expired assertion", () => assertionHeaders(BOB, ShortenerService.method.listLinks, { nowMs: Date.now() - 120_000 })],
    ["an assertion issued for another method (GetLink)", () => assertionHeaders(BOB, ShortenerService.method.getLink)],
    ["no identity at all", () => ({})],
  ];
  for (const [name, headers] of attempts) {
    it(`ListLinks with ${name} -> Unauthenticated, none of bob's links`, async () => {
      const e = await failure(internal.listLinks({ pageSize: 100 }, { headers: headers() }));
      expect(Code[e.code]).toBe(Code[Code.Unauthenticated]);
      expect(e.rawMessage).not.toContain(bobCode);
    });
  }

  it("a fresh assertion for ListLinks signed with the mesh secret is bob (the gateway's own path)", async () => {
    const res = await internal.listLinks({ pageSize: 100 }, { headers: assertionHeaders(BOB, ShortenerService.method.listLinks) });
    expect(res.links.map((l) => l.code)).toEqual([bobCode]);
  });
});

describe("public /readyz names services, never where they listen", () => {
  it("lists each service with ok and a plain state, no address, port or grpc-js text", async () => {
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const report = JSON.parse(text) as { ready: boolean; degraded: string[]; checks: { name: string; kind: string; ok: boolean; detail: string }[] };
    const services = report.checks.filter((c) => c.kind === "service" && !c.name.startsWith("chat/"));
    expect(services.map((c) => c.name).sort()).toEqual(Object.keys(running.grpcPorts).sort());
    for (const c of services) expect(c).toEqual({ name: c.name, kind: "service", critical: false, ok: true, detail: "serving" });
    // Each registered chat server by its id (a random token, no host), with its state and load.
    const chatServers = report.checks.filter((c) => c.name.startsWith("chat/"));
    expect(chatServers).toHaveLength(1);
    for (const c of chatServers) expect(c).toEqual({ name: expect.stringMatching(/^chat\/chat-[0-9a-f]{12}$/), kind: "service", critical: false, ok: true, detail: expect.stringMatching(/^serving, \d+ streams$/) });
    for (const c of report.checks.filter((c) => c.kind === "backend")) expect(c).toMatchObject({ ok: true, detail: "up" });
    expect(report.degraded).toEqual([]);
    expect(text).not.toMatch(/127\.0\.0\.1|localhost/);
    for (const port of Object.values(running.grpcPorts)) expect(text).not.toContain(String(port));
  });
});

describe("API key owners obey the user id rule", () => {
  it("issuing a key for an owner that is not a valid id is refused", async () => {
    const store = createApiKeyStore(running.engine!);
    for (const owner of ["idt-bob ", "idt\tbob", "idt-bøb", ""]) {
      await expect(issueApiKey(store, owner)).rejects.toBeInstanceOf(InvalidOwnerError);
    }
  });

  it("a stored key whose owner is not a valid id authenticates nobody: 401 / Unauthenticated", async () => {
    const store = createApiKeyStore(running.engine!);
    const minted = mintApiKey(`${BOB} `, "from before the rule");
    expect(await store.insert(minted.record)).toBe(true);
    const e = await failure(clientOver("grpc").listLinks({}, { headers: { "x-api-key": minted.key } }));
    expect(Code[e.code]).toBe(Code[Code.Unauthenticated]);
    expect(e.rawMessage).toMatch(/owner id that is not valid/);
    expect((await rest({ "x-api-key": minted.key })).status).toBe(401);
  });
});
