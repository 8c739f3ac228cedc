/**
 * Benchmark (not a test): redirect throughput through the gateway door vs a bare node:http server
 * answering the same 302s, on a Zipf-like 80/20 mix of 10,000 links; then the "no click is
 * lost" check; then the cache-miss path (near-cache hit vs Redis vs database) in-process.
 *
 *   npx tsx bench/redirect.ts [--engine memory|cluster] [--links 10000] [--duration 8]
 *                             [--connections 50] [--rounds 2]
 *
 * --engine cluster reads SWITCHBOARD_* from the environment (e.g. from `npm run infra:up`).
 * Both servers run in this process, one at a time under load; wrk (-t1) drives them with the
 * same Lua script (80% of requests on the 20% hottest codes, a browser User-Agent). Rounds
 * alternate bare/door, door/bare, ... Redirects served are counted by the gateway itself
 * (gateway_redirect_responses_total{status=~"30[12]"} on /metrics), so requests wrk cut off at
 * the end of a run are counted too.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { runEmbedded } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import type { Cache } from "../platform/ports/cache.js";
import { createClickStatsStore } from "../services/analytics/store.js";
import type { Link } from "../services/links/ports.js";
import { createLinkStore } from "../services/links/store.js";
import { LinkResolver } from "../services/redirect/resolver.js";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const ENGINE = args.get("engine") ?? "memory";
const LINKS = Number(args.get("links") ?? 10_000);
const DURATION = Number(args.get("duration") ?? 8);
const CONNECTIONS = Number(args.get("connections") ?? 50);
const ROUNDS = Number(args.get("rounds") ?? 2);
const HOT = Math.floor(LINKS / 5);
/** "door": only the door runs (for profiling with --cpu-prof). */
const ONLY = args.get("only") ?? "";
const CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const codeOf = (i: number) => `b${String(i).padStart(6, "0")}`;
const urlOf = (i: number) => `https://example.com/target/${i}`;

interface WrkResult {
  readonly name: string;
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly requests: number;
  readonly non3xx: number;
  readonly errors: number;
}

const LUA = `
local hot, n = ${HOT}, ${LINKS}
local paths = {}
for i = 0, n - 1 do paths[i + 1] = string.format("/b%06d", i) end
wrk.headers["User-Agent"] = "${CHROME}"
wrk.headers["Referer"] = "https://news.example.org/item?id=1"
math.randomseed(${Date.now() % 100000})
request = function()
  local i
  if math.random() < 0.8 then i = math.random(1, hot) else i = math.random(hot + 1, n) end
  return wrk.format("GET", paths[i])
end
`;

function ms(v: string, unit: string): number {
  const x = Number(v);
  return unit === "us" ? x / 1000 : unit === "s" ? x * 1000 : x;
}

async function wrk(name: string, port: number, script: string, seconds = DURATION): Promise<WrkResult> {
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn("wrk", ["-t1", `-c${CONNECTIONS}`, `-d${seconds}s`, "--latency", "-s", script, `http://127.0.0.1:${port}/`]);
    let s = "";
    p.stdout.on("data", (d: Buffer) => (s += d.toString()));
    p.stderr.on("data", (d: Buffer) => (s += d.toString()));
    p.on("error", reject);
    p.on("exit", () => resolve(s));
  });
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const lat = (pct: string) => {
    const m = new RegExp(`\\s${pct}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    return m ? ms(m[1]!, m[2]!) : NaN;
  };
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    name,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50ms: lat("50"),
    p99ms: lat("99"),
    requests: num(/(\d+) requests in/),
    non3xx: /Non-2xx or 3xx responses: (\d+)/.exec(out) ? num(/Non-2xx or 3xx responses: (\d+)/) : 0,
    errors: errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
  };
}

async function startBare(): Promise<{ port: number; close(): Promise<void> }> {
  const targets = new Map<string, string>();
  for (let i = 0; i < LINKS; i++) targets.set(codeOf(i), urlOf(i));
  const server = http.createServer((req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const target = targets.get((q < 0 ? url : url.slice(0, q)).slice(1));
    if (target === undefined) {
      res.writeHead(404, { "content-length": "0" });
      res.end();
      return;
    }
    res.writeHead(302, { location: target, "cache-control": "private, no-store", "content-length": "0" });
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function redirectsServed(gatewayPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gatewayPort}/metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("gateway_redirect_responses_total{")) continue;
    if (!/status="30[12]"/.test(line)) continue;
    n += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return n;
}

async function metric(gatewayPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gatewayPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

function table(rows: readonly WrkResult[]): string {
  const lines = ["| run | req/s | p50 ms | p99 ms | requests | non-3xx | socket errors |", "|---|---:|---:|---:|---:|---:|---:|"];
  for (const r of rows) {
    lines.push(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.requests} | ${r.non3xx} | ${r.errors} |`);
  }
  return lines.join("\n");
}

async function closedLoop(name: string, seconds: number, concurrency: number, op: (i: number) => Promise<unknown>) {
  const lat: number[] = [];
  const end = Date.now() + seconds * 1000;
  let i = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const t = process.hrtime.bigint();
        await op(i++);
        lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }),
  );
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]!;
  return `| ${name} | ${(lat.length / seconds).toFixed(0)} | ${q(0.5).toFixed(3)} | ${q(0.99).toFixed(3)} |`;
}

async function main(): Promise<void> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    SWITCHBOARD_ENGINE: ENGINE,
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
    SWITCHBOARD_LOG_LEVEL: "warn",
  };
  if (ENGINE === "cluster") {
    env.SWITCHBOARD_CASSANDRA_KEYSPACE ??= `bench_redirect_${Date.now().toString(36)}`;
    env.SWITCHBOARD_JWT_HS256_SECRET ??= "bench-redirect-secret-0123456789abcdef0123456789";
    process.env.SWITCHBOARD_CODE_KEY ??= "bench-redirect-code-key-0123456789abcdef";
  }
  const config = loadConfig(env as Record<string, string>);
  const log = pino({ level: "warn" });
  const mesh = await runEmbedded(config, log, { env: env as Record<string, string> });
  const engine = mesh.engine!;
  const gatewayPort = mesh.gatewayPort!;
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-redirect-"));
  const script = path.join(dir, "mix.lua");
  writeFileSync(script, LUA);
  try {
    for (let i = 0; i < 600; i++) {
      if ((await engine.readiness()).ready) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const store = await createLinkStore(engine);
    const t0 = Date.now();
    for (let i = 0; i < LINKS; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, LINKS - i) }, (_, k): Promise<boolean> => {
          const link: Link = { code: codeOf(i + k), longUrl: urlOf(i + k), ownerId: "bench", createdAt: new Date(), redirectType: 302 };
          return store.insertIfAbsent(link);
        }),
      );
    }
    console.log(`engine ${ENGINE}: seeded ${LINKS} links in ${Date.now() - t0} ms; node ${process.version}; ${os.cpus().length}x ${os.cpus()[0]?.model}`);
    const bare = await startBare();
    // Warm-up (JIT, near-cache): counted in redirects served like every other door request.
    await wrk("warm-up bare", bare.port, script, 2);
    await wrk("warm-up door", gatewayPort, script, 2);
    const rows: WrkResult[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const order = ONLY === "door" ? ["door"] : r % 2 === 1 ? ["bare", "door"] : ["door", "bare"];
      for (const which of order) {
        rows.push(
          which === "bare"
            ? await wrk(`(a) bare node:http 302 #${r}`, bare.port, script)
            : await wrk(`(b) gateway redirect door #${r}`, gatewayPort, script),
        );
      }
    }
    await bare.close();
    console.log(`\n${table(rows)}`);
    const avg = (prefix: string) => {
      const xs = rows.filter((x) => x.name.startsWith(prefix));
      return xs.reduce((a, x) => a + x.rps, 0) / xs.length;
    };
    const ratio = avg("(b)") / avg("(a)");
    console.log(`\ndoor/bare throughput: ${ratio.toFixed(2)}x (avg ${avg("(b)").toFixed(0)} vs ${avg("(a)").toFixed(0)} req/s)`);

    // No click is lost. `served` is re-read on every pass: when wrk stops, up to --connections
    // requests may still be in the door (a near-cache miss waiting on Redis / the database while
    // the store is busy); they are answered (to a closed socket), counted and clicked a moment
    // later, so a single early read could come out below the clicks recorded.
    let served = 0;
    let servedAtStop = -1;
    const stats = createClickStatsStore(engine);
    const tDrain = Date.now();
    let human = 0;
    let total = 0;
    for (;;) {
      served = await redirectsServed(gatewayPort);
      if (servedAtStop < 0) servedAtStop = served;
      human = 0;
      total = 0;
      for (let i = 0; i < LINKS; i += 100) {
        const part = await Promise.all(Array.from({ length: Math.min(100, LINKS - i) }, (_, k) => stats.get(codeOf(i + k))));
        for (const s of part) {
          human += s.human;
          total += s.total;
        }
      }
      // Stop once everything served is recorded and no late request came in meanwhile.
      if ((total >= served && (await redirectsServed(gatewayPort)) === served) || Date.now() - tDrain > 300_000) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const dropped = await metric(gatewayPort, "redirect_clicks_dropped_total");
    console.log(
      `\nclicks: redirects served ${served} (${servedAtStop} when wrk stopped), recorded human ${human}, recorded total ${total}, dropped ${dropped}, drained in ${Date.now() - tDrain} ms -> ${human === served ? "OK: equal" : "MISMATCH"}`,
    );

    if (ONLY === "door") return;
    // Cache-miss path, in-process through the shared resolver module.
    const hit = new LinkResolver(engine.cache, store);
    for (let i = 0; i < LINKS; i++) await hit.resolve(codeOf(i));
    const redisOnly = new LinkResolver(engine.cache, store, { lruMaxEntries: 1 });
    const noCache: Cache = {
      get: async () => undefined,
      set: async () => {},
      setIfAbsent: async () => true,
      delete: async () => {},
      increment: async () => 1,
    };
    const dbOnly = new LinkResolver(noCache, store, { lruMaxEntries: 1 });
    const pick = (i: number) => codeOf((i * 7919) % LINKS);
    console.log("\n| lookup path (in-process, 50 concurrent, 3 s) | lookups/s | p50 ms | p99 ms |\n|---|---:|---:|---:|");
    console.log(await closedLoop("near-cache (LRU) hit", 3, 50, (i) => hit.resolve(pick(i))));
    console.log(await closedLoop(`Redis hit (engine.cache: ${ENGINE === "cluster" ? "Redis" : "memory"})`, 3, 50, (i) => redisOnly.resolve(pick(i))));
    console.log(await closedLoop(`database (LinkStore: ${ENGINE === "cluster" ? "Cassandra" : "memory"})`, 3, 50, (i) => dbOnly.resolve(pick(i))));
    for (const r of [hit, redisOnly, dbOnly]) r.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await mesh.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
