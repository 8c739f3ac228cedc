// Issue 11 acceptance "no click lost, in CI": 20,000 redirects through a gateway PROCESS on the
// cluster engine, the analytics consumer in the redirect service's process, real Cassandra,
// Redis and NATS JetStream: once the consumer has drained, recorded human clicks == redirects
// served, counted by this test and by the door alike.
import http from "node:http";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig, upstreamVariable } from "../../platform/config.js";
import { openEngine, type Engine } from "../../platform/engine.js";
import { createLinkStore } from "../links/store.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../../testkit/keyspace.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../../testkit/processes.js";
import { infraEnv, startNats, type NatsHandle } from "../../testkit/servers/index.js";
import { createClickStatsStore } from "./store.js";

const REDIRECTS = 20_000;
const LINKS = 200;
const CONCURRENCY = 32;
const BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const keyspace = uniqueKeyspaceName("no_click_lost");
const codeOf = (i: number) => `ncl${String(i).padStart(4, "0")}`;

// A NATS of its own: the CLICKS stream and its "analytics" durable are shared by every mesh on a
// server, and another test file's consumer would take (and record elsewhere) some of our clicks.
let nats: NatsHandle;
let engine: Engine;
const procs: MeshProcess[] = [];
let gatewayPort = 0;

beforeAll(async () => {
  nats = await startNats();
  const env: Record<string, string> = {
    ...infraEnv(infra()),
    SWITCHBOARD_NATS_URL: nats.url,
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_METRICS_ON_PUBLIC_PORT: "true",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
  };
  const redirectPort = await freePort();
  env[upstreamVariable("redirect")] = `127.0.0.1:${redirectPort}`;
  engine = await openEngine(loadConfig(env), pino({ level: "silent" }));
  await waitFor("the cluster engine", async () => ((await engine.readiness()).ready ? true : undefined), 120_000);
  const store = await createLinkStore(engine);
  for (let i = 0; i < LINKS; i++) {
    await store.insertIfAbsent({ code: codeOf(i), longUrl: `https://example.com/ncl/${i}`, ownerId: "ncl-owner", createdAt: new Date(), redirectType: 302 });
  }
  procs.push(spawnSwitchboard(["redirect"], { ...env, SWITCHBOARD_GRPC_PORT: String(redirectPort) }));
  gatewayPort = await freePort();
  procs.push(spawnSwitchboard(["gateway"], { ...env, SWITCHBOARD_GATEWAY_PORT: String(gatewayPort) }));
  await waitFor(
    "the gateway process",
    async () => ((await fetch(`http://127.0.0.1:${gatewayPort}/healthz`).catch(() => undefined))?.ok ? true : undefined),
    60_000,
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}\n${procs.map((p) => p.output()).join("\n")}`);
  });
}, 240_000);

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await engine?.close();
  await nats?.stop();
  await dropKeyspace(keyspace);
});

/** GET /{code} on a keep-alive agent; resolves with the status. */
function follow(agent: http.Agent, code: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port: gatewayPort, path: `/${code}`, agent, headers: { "user-agent": BROWSER_UA } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
  });
}

async function doorServed(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gatewayPort}/metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("gateway_redirect_responses_total{") && /status="30[12]"/.test(line)) n += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return n;
}

it(`records every one of ${REDIRECTS} redirects served by a gateway process as a human click`, async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  // /healthz is liveness only: the gateway's Redis and Cassandra clients connect in the
  // background, so redirects are answered 503 until then. One redirect first; it is a click too.
  let warmUp = 0;
  await waitFor("a first redirect", async () => {
    const status = await follow(agent, codeOf(0));
    if (status === 302) warmUp++;
    return status === 302 ? true : undefined;
  });
  const statuses = new Map<number, number>();
  let next = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REDIRECTS) {
        const i = next++;
        const status = await follow(agent, codeOf((i * 7) % LINKS));
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  agent.destroy();
  const driveMs = Date.now() - t0;
  const served = (statuses.get(302) ?? 0) + warmUp;
  expect(Object.fromEntries(statuses)).toEqual({ 302: REDIRECTS });
  expect(await doorServed()).toBe(served);

  const stats = createClickStatsStore(engine);
  const recorded = async () => {
    let human = 0;
    let total = 0;
    for (let i = 0; i < LINKS; i += 50) {
      const part = await Promise.all(Array.from({ length: 50 }, (_, k) => stats.get(codeOf(i + k), { days: 1 })));
      for (const s of part) {
        human += s.human;
        total += s.total;
      }
    }
    return { human, total };
  };
  const tDrain = Date.now();
  let last = { human: 0, total: 0 };
  await waitFor(
    "the analytics consumer to record every click",
    async () => {
      last = await recorded();
      return last.total >= served ? last : undefined;
    },
    240_000,
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}: recorded ${last.total} of ${served}\n${procs.map((p) => p.output()).join("\n")}`);
  });
  // Quiet for a moment: a late duplicate would show as a total above served.
  await new Promise((r) => setTimeout(r, 1_000));
  const final = await recorded();
  console.log(
    `[no-click-lost] ${served} redirects in ${driveMs} ms (${Math.round(served / (driveMs / 1000))}/s); ` +
      `recorded human ${final.human}, total ${final.total}, drained ${Date.now() - tDrain} ms after the load`,
  );
  expect(final).toEqual({ human: served, total: served });
}, 600_000);
