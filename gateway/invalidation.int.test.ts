// Invalidation that cannot be lost (issue 10 item 3), on the cluster engine as deployed: the
// token-range and shortener services and TWO gateway processes, on real Cassandra, ZooKeeper,
// Redis and NATS. UpdateLink and DeleteLink go through a gateway; both gateways are polled.
// The gateways reach NATS through a TCP proxy the test cuts, so the LinkChanged events the
// shortener publishes meanwhile are lost for them (the shortener's own NATS stays up).
// Acceptance: the old target is never served after the acknowledgement plus one second, with
// NATS up, while it is cut, and once it is back.
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signHs256 } from "./auth/jwt.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import pino from "pino";
import { loadConfig, upstreamVariable, type ServiceName } from "../platform/config.js";
import { openEngine, type Engine } from "../platform/engine.js";
import { TcpProxy } from "../platform/engines/cluster/testing/tcp-proxy.js";
import { LINK_FENCE_TTL_MS, linkKey } from "../services/links/shared-cache.js";
import { decode } from "../services/redirect/resolver.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../testkit/keyspace.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../testkit/processes.js";
import { infraEnv } from "../testkit/servers/index.js";

const keyspace = uniqueKeyspaceName("inval");
const JWT_SECRET = "invalidation-test-secret-0123456789abcdef0123";
const ACK_GRACE_MS = 1_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const procs: MeshProcess[] = [];
const gateways: string[] = [];
let proxy: TcpProxy;
let shortener: Client<typeof ShortenerService>;
let engine: Engine | undefined;

const auth = () => ({
  headers: { authorization: `Bearer ${signHs256({ sub: "inval-owner", exp: Math.floor(Date.now() / 1000) + 600 }, JWT_SECRET)}` },
});

interface Sample {
  readonly sentAt: number;
  readonly gateway: number;
  readonly code: string;
  readonly status: number;
  readonly location: string | null;
}

async function probe(gateway: number, code: string): Promise<Sample> {
  const sentAt = Date.now();
  const res = await fetch(`${gateways[gateway]}/${code}`, { redirect: "manual" });
  await res.arrayBuffer();
  return { sentAt, gateway, code, status: res.status, location: res.headers.get("location") };
}

/** Polls every code on both gateways back to back for `ms`. */
async function pollFor(ms: number, codes: readonly string[]): Promise<Sample[]> {
  const out: Sample[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    out.push(...(await Promise.all(gateways.flatMap((_, g) => codes.map((c) => probe(g, c))))));
    await sleep(20);
  }
  return out;
}

/**
 * Creates a link through gateway 0 and warms both gateways' near-caches and Redis with it. The
 * create's own event fences Redis for a while: it is waited out before the first lookup, so
 * that Redis really holds the old target (else the test would prove nothing about Redis).
 */
async function warmLink(alias: string, longUrl: string): Promise<void> {
  await shortener.createLink({ longUrl, customAlias: alias }, auth());
  await sleep(LINK_FENCE_TTL_MS + 500);
  await waitFor(
    `Redis and both gateways hold ${alias}`,
    async () => {
      const all = await Promise.all(gateways.map((_, g) => probe(g, alias)));
      const shared = await engine!.cache.get(linkKey(alias));
      const held = shared !== undefined && decode(alias, shared);
      return all.every((s) => s.location === longUrl) && held && held.found && held.longUrl === longUrl ? true : undefined;
    },
    20_000,
  );
  for (let i = 0; i < 3; i++) for (let g = 0; g < gateways.length; g++) expect((await probe(g, alias)).location).toBe(longUrl);
}

/** Every sample sent later than ack + grace shows the new state; returns when the old state was last seen. */
function assertNeverStale(samples: readonly Sample[], ackAt: number, stale: (s: Sample) => boolean): number {
  const late = samples.filter((s) => s.sentAt >= ackAt + ACK_GRACE_MS);
  expect(late.length).toBeGreaterThan(0);
  expect(late.filter(stale)).toEqual([]);
  const lastStale = samples.filter(stale).reduce((m, s) => Math.max(m, s.sentAt - ackAt), -1);
  return lastStale;
}

beforeAll(async () => {
  const info = infra();
  const env: Record<string, string> = {
    ...infraEnv(info),
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_JWT_HS256_SECRET: JWT_SECRET,
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
  };
  // The test's own view of Redis (to check the precondition: the old target is in the shared cache).
  engine = await openEngine(loadConfig(env), pino({ level: "silent" }));
  const services: ServiceName[] = ["tokenrange", "shortener"];
  for (const name of services) env[upstreamVariable(name)] = `127.0.0.1:${await freePort()}`;
  for (const name of services) {
    procs.push(spawnSwitchboard([name], { ...env, SWITCHBOARD_GRPC_PORT: env[upstreamVariable(name)]!.split(":")[1]! }));
  }
  proxy = new TcpProxy(await freePort(), { host: info.nats.host, port: info.nats.port });
  await proxy.up();
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    // The gateway's short URLs come from its own environment (the shortener has none).
    procs.push(
      spawnSwitchboard(["gateway"], {
        ...env,
        SWITCHBOARD_NATS_URL: `nats://127.0.0.1:${proxy.port}`,
        SWITCHBOARD_GATEWAY_PORT: String(port),
        SWITCHBOARD_PUBLIC_BASE_URL: "https://go.example",
      }),
    );
    gateways.push(`http://127.0.0.1:${port}`);
  }
  for (const g of gateways) {
    await waitFor(`${g}/healthz`, async () => ((await fetch(`${g}/healthz`)).status === 200 ? true : undefined), 90_000);
  }
  shortener = createClient(ShortenerService, createGrpcTransport({ baseUrl: gateways[0]! }));
  // The shortener process is up once a create goes through (token-range and Cassandra behind it).
  await waitFor("a create through the gateway", async () => (await shortener.createLink({ longUrl: "https://probe.example/" }, auth())).link, 90_000);
}, 240_000);

afterAll(async () => {
  await proxy?.up().catch(() => undefined);
  await Promise.all(procs.map((p) => p.stop()));
  await proxy?.down();
  await engine?.close();
  await dropKeyspace(keyspace);
});

describe("invalidation through the gateway (cluster engine, two gateway processes)", () => {
  it("hands out short URLs on the gateway's host", async () => {
    const { link } = await shortener.createLink({ longUrl: "https://example.org/host" }, auth());
    expect(link!.shortUrl).toBe(`https://go.example/${link!.code}`);
  });

  it("UpdateLink and DeleteLink: the old target is gone on both gateways within a second of the answer", async () => {
    await Promise.all([warmLink("inval-upd-a", "https://old.example/upd-a"), warmLink("inval-del-a", "https://old.example/del-a")]);
    // Through the second gateway: the change does not depend on which gateway takes it.
    const other = createClient(ShortenerService, createGrpcTransport({ baseUrl: gateways[1]! }));
    await other.updateLink({ code: "inval-upd-a", link: { longUrl: "https://new.example/upd-a" }, updateMask: { paths: ["long_url"] } }, auth());
    await other.deleteLink({ code: "inval-del-a" }, auth());
    const ackAt = Date.now();
    const samples = await pollFor(2_000, ["inval-upd-a", "inval-del-a"]);
    const last = assertNeverStale(samples, ackAt, (s) => s.location?.startsWith("https://old.example/") ?? false);
    expect(samples.filter((s) => s.code === "inval-upd-a" && s.sentAt >= ackAt + ACK_GRACE_MS).every((s) => s.location === "https://new.example/upd-a")).toBe(true);
    expect(samples.filter((s) => s.code === "inval-del-a" && s.sentAt >= ackAt + ACK_GRACE_MS).every((s) => s.status === 404)).toBe(true);
    console.log(`[invalidation] NATS up: old target last seen ${last} ms after the answer (${samples.length} probes)`);
  }, 90_000);

  it("with the gateways' NATS cut: events are lost, yet no old target after ack + 1 s, during the cut and once NATS is back", async () => {
    await Promise.all([warmLink("inval-upd-b", "https://old.example/upd-b"), warmLink("inval-del-b", "https://old.example/del-b")]);
    await proxy.down();
    // Warm again while cut: what the gateways now cache is the old state, and no event will say otherwise.
    for (let i = 0; i < 3; i++) for (let g = 0; g < gateways.length; g++) expect((await probe(g, "inval-upd-b")).location).toBe("https://old.example/upd-b");
    await shortener.updateLink({ code: "inval-upd-b", link: { longUrl: "https://new.example/upd-b" }, updateMask: { paths: ["long_url"] } }, auth());
    await shortener.deleteLink({ code: "inval-del-b" }, auth());
    const ackAt = Date.now();
    const stale = (s: Sample) => s.location?.startsWith("https://old.example/") ?? false;
    const during = await pollFor(2_500, ["inval-upd-b", "inval-del-b"]);
    const lastDuring = assertNeverStale(during, ackAt, stale);
    await proxy.up();
    const backAt = Date.now();
    const after = await pollFor(2_500, ["inval-upd-b", "inval-del-b"]);
    assertNeverStale(after, Math.min(ackAt, backAt), stale);
    expect(after.filter((s) => s.code === "inval-upd-b").every((s) => s.location === "https://new.example/upd-b")).toBe(true);
    expect(after.filter((s) => s.code === "inval-del-b").every((s) => s.status === 404)).toBe(true);
    console.log(`[invalidation] NATS cut: old target last seen ${lastDuring} ms after the answer; ${during.length + after.length} probes`);
  }, 120_000);

  it("a link changed again after NATS is back is invalidated by event as before", async () => {
    await warmLink("inval-upd-c", "https://old.example/upd-c");
    await shortener.updateLink({ code: "inval-upd-c", link: { longUrl: "https://new.example/upd-c" }, updateMask: { paths: ["long_url"] } }, auth());
    const ackAt = Date.now();
    const samples = await pollFor(1_500, ["inval-upd-c"]);
    assertNeverStale(samples, ackAt, (s) => s.location === "https://old.example/upd-c");
  }, 90_000);
});
