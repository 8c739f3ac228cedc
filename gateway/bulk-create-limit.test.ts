// BulkCreateLinks at the edge (issue 8, findings 5, 9 and 10), through the real embedded mesh:
// every item counts against the creation limits, a stream over the cap reports everything it
// stored, non-public targets and case look-alike aliases are refused, other owners' links stay
// invisible. Plus the splice of upstream results and refusals on its own.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createContextValues, type Client, type HandlerContext } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import {
  BulkCreateLinksResponseSchema,
  LinkErrorDetailSchema,
  LinkErrorReason,
  ShortenerService,
  type BulkCreateLinksRequest,
  type BulkCreateLinksRequestSchema,
  type BulkCreateLinksResponse,
} from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { DomainError } from "../platform/errors.js";
import { identityKey } from "../platform/identity.js";
import { MemoryCache } from "../platform/engines/memory/memory-cache.js";
import { DEV_JWT_SECRET } from "./auth/config.js";
import { signHs256 } from "./auth/jwt.js";
import { MAX_URL_LENGTH } from "../services/shortener/domain/validate.js";
import { limitBulkCreate, splice } from "./bulk-create-limit.js";
import { CreateRateLimiter } from "./rate-limit.js";

/** Counts reset each UTC minute: start a counting test well inside one. */
async function awayFromMinuteEnd(): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < 10_000) await new Promise((r) => setTimeout(r, left + 50));
}

const auth = (sub: string) => ({ headers: { authorization: `Bearer ${signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, DEV_JWT_SECRET)}` } });

async function mesh(env: Record<string, string>): Promise<{ running: Running; base: string; client: Client<typeof ShortenerService> }> {
  const config = loadConfig({ SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "500", SWITCHBOARD_PUBLIC_BASE_URL: "https://sb.example" });
  const running = await runEmbedded(config, pino({ level: "silent" }), { env });
  const base = `http://127.0.0.1:${running.gatewayPort}`;
  return { running, base, client: createClient(ShortenerService, createGrpcTransport({ baseUrl: base })) };
}

function items(n: number, prefix = "i"): MessageInitShape<typeof BulkCreateLinksRequestSchema>[] {
  return Array.from({ length: n }, (_, i) => ({ itemId: `${prefix}${i}`, longUrl: `https://example.com/${prefix}/${i}` }));
}

async function* streamOf<T>(xs: readonly T[]): AsyncGenerator<T> {
  for (const x of xs) yield x;
}

async function listAll(client: Client<typeof ShortenerService>, sub: string): Promise<{ code: string; longUrl: string }[]> {
  const out: { code: string; longUrl: string }[] = [];
  let pageToken = "";
  do {
    const p = await client.listLinks({ pageSize: 100, pageToken }, auth(sub));
    out.push(...p.links.map((l) => ({ code: l.code, longUrl: l.longUrl })));
    pageToken = p.nextPageToken;
  } while (pageToken);
  return out;
}

const codesOf = (r: BulkCreateLinksResponse) => r.results.flatMap((x) => (x.result.case === "link" ? [x.result.value.code] : []));
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as ConnectError);

describe("BulkCreateLinks with the per-user creation limit at 60/min", () => {
  let m: Awaited<ReturnType<typeof mesh>>;
  beforeAll(async () => {
    m = await mesh({ SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "60", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "0" });
  });
  afterAll(() => m.running.close());

  it("a stream of 200 items creates exactly the first 60 and reports 140 RESOURCE_EXHAUSTED; ListLinks shows exactly those 60", async () => {
    await awayFromMinuteEnd();
    const sent = items(200);
    const r = await m.client.bulkCreateLinks(streamOf(sent), auth("bulk-alice"));
    expect(r.results.map((x) => x.itemId)).toEqual(sent.map((x) => x.itemId));
    expect(r.succeeded).toBe(60);
    expect(r.failed).toBe(140);
    expect(r.truncated).toBe(false);
    expect(r.results.slice(0, 60).every((x) => x.result.case === "link")).toBe(true);
    for (const x of r.results.slice(60)) {
      expect(x.result.case).toBe("error");
      if (x.result.case !== "error") continue;
      expect(x.result.value.code).toBe(Code.ResourceExhausted);
      expect(x.result.value.reason).toBe(LinkErrorReason.RATE_LIMITED);
      expect(x.result.value.message).toMatch(/at most 60 link creations per minute from this account; retry in \d+ s/);
    }
    const listed = await listAll(m.client, "bulk-alice");
    expect(listed.map((l) => l.code).sort()).toEqual(codesOf(r).sort());
    expect(listed.map((l) => l.longUrl).sort()).toEqual(sent.slice(0, 60).map((x) => x.longUrl).sort());
    // The same budget as CreateLink: it is spent.
    const e = await failure(m.client.createLink({ longUrl: "https://example.com/one-more" }, auth("bulk-alice")));
    expect(e?.code).toBe(Code.ResourceExhausted);
    // Another account has its own budget.
    expect((await m.client.bulkCreateLinks(streamOf(items(3, "b")), auth("bulk-bob"))).succeeded).toBe(3);
  }, 90_000);

  it("other owners' bulk-created links answer NotFound (get, update, delete, stats) and stay unlisted", async () => {
    const mine = await m.client.bulkCreateLinks(streamOf(items(2, "own")), auth("owner-carol"));
    const code = codesOf(mine)[0]!;
    const as = auth("intruder-dave");
    expect((await failure(m.client.getLink({ code }, as)))?.code).toBe(Code.NotFound);
    expect((await failure(m.client.deleteLink({ code }, as)))?.code).toBe(Code.NotFound);
    expect((await failure(m.client.getLinkStats({ code }, as)))?.code).toBe(Code.NotFound);
    expect((await failure(m.client.updateLink({ code, link: { longUrl: "https://evil.example/" }, updateMask: { paths: ["long_url"] } }, as)))?.code).toBe(Code.NotFound);
    expect((await m.client.listLinks({}, as)).links).toEqual([]);
    expect((await m.client.getLink({ code }, auth("owner-carol"))).link?.longUrl).toBe("https://example.com/own/0");
  });
});

describe("BulkCreateLinks with the per-address limit", () => {
  let m: Awaited<ReturnType<typeof mesh>>;
  beforeAll(async () => {
    m = await mesh({ SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "0", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "50" });
  });
  afterAll(() => m.running.close());

  it("two accounts from one address share its 50 creations a minute", async () => {
    await awayFromMinuteEnd();
    const a = await m.client.bulkCreateLinks(streamOf(items(30, "a")), auth("ip-frank"));
    expect([a.succeeded, a.failed]).toEqual([30, 0]);
    const b = await m.client.bulkCreateLinks(streamOf(items(30, "b")), auth("ip-grace"));
    expect([b.succeeded, b.failed]).toEqual([20, 10]);
    const last = b.results[29]!.result;
    expect(last.case === "error" && last.value.message).toMatch(/from this IP address/);
    expect((await listAll(m.client, "ip-grace")).length).toBe(20);
  }, 90_000);
});

describe("through the gateway with limits off: the cap, non-public targets, case look-alike aliases", () => {
  let m: Awaited<ReturnType<typeof mesh>>;
  beforeAll(async () => {
    m = await mesh({ SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "0", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "0" });
  });
  afterAll(() => m.running.close());

  it("a stream of 10,001 items answers truncated with the 10,000 stored links; the 10,001st is not stored", async () => {
    // URLs of the longest allowed length: the report is then as large as a report can be (~22 MB).
    const sent = items(10_001, "big").map((x) => ({ ...x, longUrl: `${x.longUrl}/`.padEnd(MAX_URL_LENGTH, "a") }));
    const t0 = Date.now();
    const r = await m.client.bulkCreateLinks(streamOf(sent), auth("bulk-heidi"));
    const ms = Date.now() - t0;
    expect(r.truncated).toBe(true);
    expect(r.results.map((x) => x.itemId)).toEqual(sent.slice(0, 10_000).map((x) => x.itemId));
    expect(r.succeeded).toBe(10_000);
    expect(r.results.every((x, i) => x.result.case === "link" && x.result.value.longUrl === sent[i]!.longUrl)).toBe(true);
    const listed = await listAll(m.client, "bulk-heidi");
    expect(listed.length).toBe(r.succeeded);
    expect(new Set(listed.map((l) => l.code))).toEqual(new Set(codesOf(r)));
    expect(listed.some((l) => l.longUrl === sent[10_000]!.longUrl)).toBe(false);
    console.log(`bulk-create-limit: 10,001-item stream answered in ${ms} ms`);
  }, 90_000);

  it.each([
    "http://[::127.0.0.1]/", "http://[::ffff:0:127.0.0.1]/", "http://[64:ff9b::127.0.0.1]/", "http://[2002:7f00:1::]/",
    "http://[100::1]/", "http://[2001:db8::1]/", "http://localhost.localdomain/", "http://127.0.0.1.nip.io/",
    "http://metadata.google.internal/", "http://0x7f.1/",
  ])("CreateLink refuses %s (INVALID_ARGUMENT, URL_DOMAIN_BLOCKED)", async (longUrl) => {
    const e = await failure(m.client.createLink({ longUrl }, auth("url-ivan")));
    expect(e).toBeInstanceOf(ConnectError);
    expect(e!.code).toBe(Code.InvalidArgument);
    expect(e!.findDetails(LinkErrorDetailSchema)[0]?.reason ?? findTrailerError(e!.metadata)?.findDetails(LinkErrorDetailSchema)[0]?.reason).toBe(
      LinkErrorReason.URL_DOMAIN_BLOCKED,
    );
  });

  it("an alias differing only in case answers ALREADY_EXISTS (also in bulk); resolution stays case-sensitive; delete frees it", async () => {
    const alias = `bob-secret-${Date.now().toString(36)}`;
    const look = alias.replace(/^b/, "B").replace("-s", "-S");
    await m.client.createLink({ longUrl: "https://example.com/real", customAlias: alias }, auth("case-bob"));
    const e = await failure(m.client.createLink({ longUrl: "https://evil.example/", customAlias: look }, auth("case-mallory")));
    expect(e?.code).toBe(Code.AlreadyExists);
    expect(e!.findDetails(LinkErrorDetailSchema)[0]?.reason).toBe(LinkErrorReason.ALIAS_TAKEN);
    const bulk = await m.client.bulkCreateLinks(streamOf([{ itemId: "1", longUrl: "https://evil.example/", customAlias: alias.toUpperCase() }]), auth("case-mallory"));
    expect(bulk.results[0]!.result.case === "error" && bulk.results[0]!.result.value.code).toBe(Code.AlreadyExists);
    const real = await fetch(`${m.base}/${alias}`, { redirect: "manual" });
    expect(real.status).toBe(302);
    expect((await fetch(`${m.base}/${look}`, { redirect: "manual" })).status).toBe(404);
    await m.client.deleteLink({ code: alias }, auth("case-bob"));
    const taken = await m.client.createLink({ longUrl: "https://example.com/new", customAlias: look }, auth("case-mallory"));
    expect(taken.link?.code).toBe(look);
  });
});

describe("splicing refusals into the upstream's in-order results", () => {
  const resultsOf = (ids: string[]) =>
    create(BulkCreateLinksResponseSchema, {
      results: ids.map((itemId) => ({ itemId, result: { case: "link" as const, value: { code: `c-${itemId}` } } })),
      succeeded: ids.length,
    });
  const refusal = (position: number, itemId: string) => ({ position, itemId, error: new DomainError("ResourceExhausted", "limited") });

  it("puts refusals back at their positions and counts both", () => {
    const r = splice(resultsOf(["a", "c", "e"]), [refusal(1, "b"), refusal(3, "d")], 5, false);
    expect(r.results.map((x) => `${x.itemId}:${x.result.case}`)).toEqual(["a:link", "b:error", "c:link", "d:error", "e:link"]);
    expect([r.succeeded, r.failed, r.truncated]).toEqual([3, 2, false]);
  });

  it("an upstream that answered fewer items than it was sent: report up to there, truncated", () => {
    const r = splice(resultsOf(["a"]), [refusal(1, "b")], 4, false);
    expect(r.results.map((x) => x.itemId)).toEqual(["a", "b"]);
    expect(r.truncated).toBe(true);
  });

  it("the limit window rolling over mid-stream lets items through again; only allowed items reach the upstream; refused items count toward the cap", async () => {
    let now = 60_000 * 5000 + 30_000;
    const limiter = new CreateRateLimiter({ cache: new MemoryCache({ now: () => now }), perMinuteIp: 0, perMinuteUser: 2, now: () => now });
    const forwarded: string[] = [];
    const upstream = async (reqs: AsyncIterable<BulkCreateLinksRequest>) => {
      for await (const q of reqs) forwarded.push(q.itemId);
      return resultsOf(forwarded);
    };
    const handler = limitBulkCreate(upstream as unknown as Parameters<typeof limitBulkCreate>[0], limiter, 7);
    const values = createContextValues();
    values.set(identityKey, { userId: "u", kind: "user" });
    const reqs = async function* () {
      for (let i = 0; i < 9; i++) {
        if (i === 4) now += 60_000; // next window from the 5th item on
        yield { itemId: `x${i}`, longUrl: "https://example.com/" } as BulkCreateLinksRequest;
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    const r = await handler(reqs(), { values } as unknown as HandlerContext);
    expect(r.results.map((x) => `${x.itemId}:${x.result.case}`)).toEqual(["x0:link", "x1:link", "x2:error", "x3:error", "x4:link", "x5:link", "x6:error"]);
    expect(forwarded).toEqual(["x0", "x1", "x4", "x5"]);
    expect(r.truncated).toBe(true);
  });
});
