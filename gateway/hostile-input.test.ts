/**
 * Acceptance: the bad-input table. Hostile or malformed link-creation requests through the real
 * embedded mesh (memory engine, gateway on port 0), over REST and Connect/gRPC; each gets the
 * right status/code and a clear message, and nothing is stored for any of them.
 */
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { generateKeyPairSync } from "node:crypto";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { RedirectService } from "../gen/switchboard/redirect/v1/redirect_pb.js";
import { LinkErrorDetailSchema, LinkErrorReason, ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { issueApiKey } from "../services/apikeys/service.js";
import { createApiKeyStore } from "../services/apikeys/store.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";

const PUBLIC_BASE = "https://sb.example";
let running: Running;
let base: string;
let revokedKey: string;
const now = () => Math.floor(Date.now() / 1000);
const tokenFor = (sub: string, extra: Record<string, unknown> = {}) => signHs256({ sub, exp: now() + 600, ...extra }, DEV_JWT_SECRET);
const ALICE = "hostile-alice";
const BOB = "hostile-bob";
let bobCode: string;
const BOB_ALIAS = "bobs-link";

beforeAll(async () => {
  const config = loadConfig({
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "500",
    SWITCHBOARD_PUBLIC_BASE_URL: PUBLIC_BASE,
  });
  running = await runEmbedded(config, pino({ level: "silent" }), {
    env: { SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "0", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "0" },
  });
  base = `http://127.0.0.1:${running.gatewayPort}`;
  const store = createApiKeyStore(running.engine!);
  const issued = await issueApiKey(store, ALICE, "revoked one");
  await store.revoke(issued.record.id, new Date());
  revokedKey = issued.key;
  // Bob's link: the one legitimate create, used for "duplicate alias" and "another owner's link".
  const res = await rest({ long_url: "https://example.com/bob", custom_alias: BOB_ALIAS }, { auth: tokenFor(BOB) });
  expect(res.status).toBe(201);
  bobCode = ((await res.json()) as { code: string }).code;
});
afterAll(() => running?.close());

interface RestCall {
  auth?: string | null;
  headers?: Record<string, string>;
  raw?: string;
  method?: string;
}

function rest(body: unknown, call: RestCall = {}): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json", ...call.headers };
  const auth = call.auth === undefined ? tokenFor(ALICE) : call.auth;
  if (auth !== null && !("authorization" in headers) && !("x-api-key" in headers)) headers["authorization"] = `Bearer ${auth}`;
  const method = call.method ?? "POST";
  return fetch(`${base}/api/v1/shorten`, {
    method,
    headers,
    ...(method === "GET" ? {} : { body: call.raw ?? JSON.stringify(body) }),
  });
}

interface RestRow {
  readonly name: string;
  readonly body?: unknown;
  readonly call?: RestCall | (() => RestCall);
  readonly status: number;
  readonly code: string;
  readonly message: RegExp;
  readonly field?: string;
  /** An alias the request tried to claim: must not resolve afterwards. */
  readonly alias?: string;
}

const url = (u: string) => ({ long_url: u });
const forgedToken = () => signHs256({ sub: ALICE, exp: now() + 600 }, "not-the-gateway-secret-0123456789abcdef");
const noneToken = () =>
  `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${Buffer.from(JSON.stringify({ sub: ALICE })).toString("base64url")}.`;
const rsToken = () => {
  // RS256 token with a key the gateway has never seen (no JWKS configured).
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const h = Buffer.from(JSON.stringify({ alg: "RS256", kid: "k1" })).toString("base64url");
  const p = Buffer.from(JSON.stringify({ sub: ALICE })).toString("base64url");
  return `${h}.${p}.${Buffer.from(privateKey.export({ format: "der", type: "pkcs8" })).subarray(0, 32).toString("base64url")}`;
};

const REST_ROWS: readonly RestRow[] = [
  { name: "javascript: URL", body: url("javascript:alert(document.cookie)"), status: 400, code: "invalid_argument", message: /long_url: .*(scheme|http)/i, field: "long_url" },
  { name: "data: URL", body: url("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="), status: 400, code: "invalid_argument", message: /long_url: .*(scheme|http)/i, field: "long_url" },
  { name: "relative URL", body: url("/etc/passwd"), status: 400, code: "invalid_argument", message: /long_url: /, field: "long_url" },
  { name: "scheme-relative URL", body: url("//evil.example/x"), status: 400, code: "invalid_argument", message: /long_url: /, field: "long_url" },
  { name: "10 KB URL", body: url(`https://example.com/${"a".repeat(10_240)}`), status: 400, code: "invalid_argument", message: /long_url: .*(2,?048|long)/i, field: "long_url" },
  { name: "userinfo in URL", body: url("https://user:hunter2@example.com/"), status: 400, code: "invalid_argument", message: /long_url: .*credential/i, field: "long_url" },
  { name: "our own host (redirect loop)", body: url(`${PUBLIC_BASE}/abc1234`), status: 400, code: "invalid_argument", message: /long_url: .*(own|loop|our)/i, field: "long_url" },
  { name: "blocklisted domain", body: url("https://bit.ly/abc"), status: 400, code: "invalid_argument", message: /long_url: .*block/i, field: "long_url" },
  { name: "blocklisted subdomain", body: url("https://www.wicar.org/test"), status: 400, code: "invalid_argument", message: /long_url: .*block/i, field: "long_url" },
  { name: "loopback target", body: url("http://127.0.0.1:8080/admin"), status: 400, code: "invalid_argument", message: /long_url: /, field: "long_url" },
  { name: "ftp: URL", body: url("ftp://example.com/file"), status: 400, code: "invalid_argument", message: /long_url: /, field: "long_url" },
  { name: "unicode alias", body: { long_url: "https://example.com", custom_alias: "héllo-wörld" }, status: 400, code: "invalid_argument", message: /custom_alias: /, field: "custom_alias" },
  { name: "path-traversal alias", body: { long_url: "https://example.com", custom_alias: "../../etc/passwd" }, status: 400, code: "invalid_argument", message: /custom_alias: /, field: "custom_alias" },
  { name: "reserved alias", body: { long_url: "https://example.com", custom_alias: "admin" }, status: 400, code: "invalid_argument", message: /custom_alias: .*reserved/i, field: "custom_alias" },
  { name: "reserved alias, other case", body: { long_url: "https://example.com", custom_alias: "SignUp" }, status: 400, code: "invalid_argument", message: /custom_alias: .*reserved/i, field: "custom_alias" },
  { name: "duplicate alias (someone else's)", body: { long_url: "https://example.com/mine", custom_alias: BOB_ALIAS }, status: 409, code: "already_exists", message: /custom_alias: /, field: "custom_alias" },
  { name: "expiry in the past", body: { long_url: "https://example.com", expiry_date: "2001-01-01T00:00:00Z" }, status: 400, code: "invalid_argument", message: /expire_time|expiry_date/, field: "expiry_date" },
  { name: "expiry not ISO 8601", body: { long_url: "https://example.com", expiry_date: "next tuesday" }, status: 400, code: "invalid_argument", message: /expiry_date must be an ISO 8601 date-time/, field: "expiry_date" },
  { name: "malformed JSON", call: { raw: '{"long_url": "https://example.com",' }, status: 400, code: "invalid_argument", message: /^malformed JSON: / },
  { name: "JSON array body", body: [{ long_url: "https://example.com" }], status: 400, code: "invalid_argument", message: /must be a JSON object/ },
  { name: "empty body", call: { raw: "" }, status: 400, code: "invalid_argument", message: /body is empty/ },
  { name: "missing long_url", body: { custom_alias: "nolongurl" }, status: 400, code: "invalid_argument", message: /long_url is required/, field: "long_url" },
  { name: "long_url of the wrong type", body: { long_url: 42 }, status: 400, code: "invalid_argument", message: /long_url must be a string \(got number\)/, field: "long_url" },
  { name: "custom_alias of the wrong type", body: { long_url: "https://example.com", custom_alias: ["x"] }, status: 400, code: "invalid_argument", message: /custom_alias must be a string \(got array\)/, field: "custom_alias" },
  { name: "redirect_type not 301/302", body: { long_url: "https://example.com", redirect_type: 307 }, status: 400, code: "invalid_argument", message: /redirect_type must be 301 or 302/, field: "redirect_type" },
  { name: "oversized body (20 KB)", call: { raw: JSON.stringify({ long_url: `https://example.com/${"b".repeat(20_000)}` }) }, status: 413, code: "payload_too_large", message: /larger than 16384 bytes/ },
  { name: "wrong content-type", call: { raw: "long_url=https://example.com", headers: { "content-type": "application/x-www-form-urlencoded" } }, status: 415, code: "unsupported_media_type", message: /content-type must be application\/json/ },
  { name: "GET instead of POST", call: { method: "GET" }, status: 405, code: "method_not_allowed", message: /use POST/ },
  { name: "missing credentials", body: url("https://example.com"), call: { auth: null }, status: 401, code: "unauthenticated", message: /needs credentials/ },
  { name: "forged identity header, no credentials", body: url("https://example.com"), call: { auth: null, headers: { "x-switchboard-user": ALICE, "x-switchboard-auth-kind": "user" } }, status: 401, code: "unauthenticated", message: /needs credentials/ },
  { name: "token signed with another secret", body: url("https://example.com"), call: () => ({ auth: forgedToken() }), status: 401, code: "unauthenticated", message: /signature is invalid/ },
  { name: "expired token", body: url("https://example.com"), call: () => ({ auth: tokenFor(ALICE, { exp: now() - 3600 }) }), status: 401, code: "unauthenticated", message: /token expired at/ },
  { name: "alg none token", body: url("https://example.com"), call: () => ({ auth: noneToken() }), status: 401, code: "unauthenticated", message: /(algorithm "none" is not accepted|malformed)/ },
  { name: "RS256 token with no key configured", body: url("https://example.com"), call: () => ({ auth: rsToken() }), status: 401, code: "unauthenticated", message: /unknown key id "k1"/ },
  { name: "garbage bearer token", body: url("https://example.com"), call: { auth: "not-a-jwt" }, status: 401, code: "unauthenticated", message: /malformed token/ },
  { name: "Basic auth scheme", body: url("https://example.com"), call: { headers: { authorization: "Basic YWxpY2U6cHc=" } }, status: 401, code: "unauthenticated", message: /unsupported Authorization scheme "Basic"/ },
  { name: "revoked API key", body: url("https://example.com"), call: () => ({ headers: { "x-api-key": revokedKey } }), status: 401, code: "unauthenticated", message: /API key [a-z2-7]{16} was revoked/ },
  { name: "malformed API key", body: url("https://example.com"), call: { headers: { authorization: "ApiKey sb_123" } }, status: 401, code: "unauthenticated", message: /malformed API key/ },
  { name: "user_id of someone else does not make a credential", body: { long_url: "https://example.com", user_id: BOB }, call: { auth: null }, status: 401, code: "unauthenticated", message: /needs credentials/ },
];

describe("hostile input over REST POST /api/v1/shorten", () => {
  for (const row of REST_ROWS) {
    it(`${row.name} -> ${row.status} ${row.code}`, async () => {
      const call = typeof row.call === "function" ? row.call() : (row.call ?? {});
      const res = await rest(row.body, call);
      const text = await res.text();
      expect(res.status, text).toBe(row.status);
      expect(res.headers.get("content-type")).toBe("application/json");
      const body = JSON.parse(text) as { error: { code: string; message: string; field?: string } };
      expect(body.error.code).toBe(row.code);
      expect(body.error.message).toMatch(row.message);
      if (row.field) expect(body.error.field).toBe(row.field);
      expect(text).not.toMatch(/\n\s+at |stack/i);
      if (row.status === 401) expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    });
  }
});

interface ConnectRow {
  readonly name: string;
  readonly call: (c: Client<typeof ShortenerService>) => Promise<unknown>;
  readonly auth: "alice" | "none" | "forged-header";
  readonly code: Code;
  readonly message: RegExp;
}

const CONNECT_ROWS: readonly ConnectRow[] = [
  { name: "CreateLink javascript:", auth: "alice", call: (c) => c.createLink({ longUrl: "javascript:alert(1)" }), code: Code.InvalidArgument, message: /long_url: / },
  { name: "CreateLink userinfo", auth: "alice", call: (c) => c.createLink({ longUrl: "http://a:b@example.com" }), code: Code.InvalidArgument, message: /long_url: .*credential/i },
  { name: "CreateLink path-traversal alias", auth: "alice", call: (c) => c.createLink({ longUrl: "https://example.com", customAlias: "..%2f..%2fadmin" }), code: Code.InvalidArgument, message: /custom_alias: / },
  { name: "CreateLink reserved alias", auth: "alice", call: (c) => c.createLink({ longUrl: "https://example.com", customAlias: "analytics" }), code: Code.InvalidArgument, message: /custom_alias: .*reserved/i },
  { name: "CreateLink duplicate alias", auth: "alice", call: (c) => c.createLink({ longUrl: "https://example.com", customAlias: BOB_ALIAS }), code: Code.AlreadyExists, message: /custom_alias: / },
  { name: "CreateLink without credentials", auth: "none", call: (c) => c.createLink({ longUrl: "https://example.com" }), code: Code.Unauthenticated, message: /needs credentials/ },
  { name: "CreateLink with a forged x-switchboard-user header", auth: "forged-header", call: (c) => c.createLink({ longUrl: "https://example.com" }), code: Code.Unauthenticated, message: /needs credentials/ },
  { name: "GetLink of another owner's link", auth: "alice", call: (c) => c.getLink({ code: bobCode }), code: Code.NotFound, message: /not found/ },
  { name: "DeleteLink of another owner's link", auth: "alice", call: (c) => c.deleteLink({ code: bobCode }), code: Code.NotFound, message: /not found/ },
  { name: "UpdateLink of another owner's link", auth: "alice", call: (c) => c.updateLink({ code: bobCode, link: { longUrl: "https://evil.example" }, updateMask: { paths: ["long_url"] } }), code: Code.NotFound, message: /not found/ },
];

function headersFor(auth: ConnectRow["auth"]): Record<string, string> {
  if (auth === "alice") return { authorization: `Bearer ${tokenFor(ALICE)}` };
  if (auth === "forged-header") return { "x-switchboard-user": ALICE, "x-switchboard-auth-kind": "user" };
  return {};
}

describe("hostile input over Connect and gRPC", () => {
  for (const protocol of ["connect", "grpc"] as const) {
    for (const row of CONNECT_ROWS) {
      it(`${protocol}: ${row.name} -> ${Code[row.code]}`, async () => {
        const transport = protocol === "connect" ? createConnectTransport({ baseUrl: base, httpVersion: "1.1" }) : createGrpcTransport({ baseUrl: base });
        const client = createClient(ShortenerService, transport);
        const withHeaders = new Proxy(client, {
          get: (t, p) => (req: unknown) => (t as unknown as Record<string | symbol, (r: unknown, o: unknown) => unknown>)[p]!(req, { headers: headersFor(row.auth) }),
        }) as Client<typeof ShortenerService>;
        const err = await row.call(withHeaders).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ConnectError);
        expect(Code[(err as ConnectError).code]).toBe(Code[row.code]);
        expect((err as ConnectError).rawMessage).toMatch(row.message);
        expect((err as ConnectError).rawMessage).not.toMatch(/\n\s+at /);
      });
    }
  }
});

describe("error details reach every protocol", () => {
  it("REST and Connect clients get the shortener's LinkErrorDetail reason", async () => {
    const res = await rest({ long_url: "javascript:alert(1)" });
    expect(((await res.json()) as { error: { reason?: string } }).error.reason).toBe("URL_SCHEME_NOT_ALLOWED");
    const client = createClient(ShortenerService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
    const err = (await client
      .createLink({ longUrl: "https://bit.ly/x" }, { headers: { authorization: `Bearer ${tokenFor(ALICE)}` } })
      .catch((e: unknown) => e)) as ConnectError;
    expect(err.findDetails(LinkErrorDetailSchema)[0]).toMatchObject({ reason: LinkErrorReason.URL_DOMAIN_BLOCKED, field: "long_url" });
  });
});

describe("nothing was stored", () => {
  it("alice owns no link; bob still owns exactly his one, unchanged", async () => {
    const client = createClient(ShortenerService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
    const mine = await client.listLinks({ pageSize: 100 }, { headers: { authorization: `Bearer ${tokenFor(ALICE)}` } });
    expect(mine.links).toEqual([]);
    const bobs = await client.listLinks({ pageSize: 100 }, { headers: { authorization: `Bearer ${tokenFor(BOB)}` } });
    expect(bobs.links.map((l) => [l.code, l.longUrl])).toEqual([[BOB_ALIAS, "https://example.com/bob"]]);
  });

  it("no alias a hostile request tried to claim resolves", async () => {
    const redirect = createClient(RedirectService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
    for (const code of ["nolongurl", "admin", "SignUp", "metrics", "analytics"]) {
      const err = await redirect.resolve({ code }).then(
        () => undefined,
        (e: unknown) => e as ConnectError,
      );
      expect(err?.code, code).toBe(Code.NotFound);
    }
  });
});
