/**
 * Benchmark (not a test): redirect throughput through the gateway door vs a bare node:http server
 * answering the same 302s, on a Zipf-like 80/20 mix of 10,000 links; then the "no click is
 * lost" check; then the cache-miss path (near-cache hit vs Redis vs database) in-process.
 *
 *   npx tsx bench/redirect.ts [--engine memory|cluster] [--topology embedded|split [--gateways 1]] [--drain [--consumers 1]] [--links 10000]
 *                             [--duration 8] [--connections 50] [--rounds 2] [--only door|bare] [--sabotage] [--profile-gateway DIR] [--tls]
 *
 * Exits 2 when wrk (or /usr/bin/time) is missing, 1 when a check fails: any non-3xx answer or socket
 * error, the door's count of redirects not matching wrk's, or clicks recorded != redirects served.
 * `--sabotage` sends 5 redirects behind wrk's back to show that the checks fail the run.
 *
 * --engine cluster uses the SWITCHBOARD_* servers of the environment (e.g. from `npm run
 * infra:up`), or starts its own (testkit startInfra()) when SWITCHBOARD_CASSANDRA_CONTACT_POINTS
 * is not set.
 * --topology embedded (default): the whole mesh in this process (`runEmbedded`, what `npm start`
 * runs), the analytics consumer on the gateway's event loop.
 * --topology split (cluster engine only): the gateway alone in its own process (`switchboard
 * gateway`, as deployed); the click check then reads the CLICKS stream (every click published by
 * that gateway, counted from its batches), because the Cassandra counters of several hundred
 * thousand clicks took many minutes to drain on this box before batch recording; `--drain` also
 * runs the analytics consumer(s) (into Cassandra, `--consumers N` on one durable) after the load,
 * times how fast they drain the backlog (must be >= the door's redirects/s, else exit 1) and
 * then checks the stored counts. `--gateways N` (split): N gateway processes feed the one CLICKS
 * stream; each run drives them all at once (one wrk per gateway, the connections shared out), and
 * the bare server with as many wrk processes; served, clicks and CPU are summed over the gateways.
 * The bare server runs in this process; one server at a time is under load; wrk (-t1) drives
 * both with the same Lua script (80% of requests on the 20% hottest codes, a browser User-Agent).
 * Rounds alternate bare/door, door/bare, ... Redirects served are counted by the gateway itself
 * (gateway_redirect_responses_total{status=~"30[12]"} on /metrics), so requests wrk cut off at
 * the end of a run are counted too.
 * --tls: the gateway serves TLS (the test certificate of testkit/tls/, SWITCHBOARD_GATEWAY_TLS_*)
 * and the bare server is node:https with the same certificate; wrk speaks https to both over
 * keep-alive connections (a handshake per connection, then the bulk cipher per request).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { runEmbedded } from "../cmd/mesh.js";
import { loadConfig } from "../platform/config.js";
import { openEngine, type Engine } from "../platform/engine.js";
import type { Cache } from "../platform/ports/cache.js";
import { isHumanClick } from "../services/analytics/classify.js";
import { decodeClickBatch, startClickConsumer, type ClickConsumer } from "../services/analytics/consumer.js";
import { createClickStatsStore } from "../services/analytics/store.js";
import { CLICKS_STREAM, clickBatchSubject } from "../services/redirect/subjects.js";
import { freePort, spawnSwitchboard, waitFor } from "../testkit/processes.js";
import { infraEnv, startInfra, type Infra } from "../testkit/servers/index.js";
import { Checks, provenance, requireTool } from "./bench-guard.js";
import { cpuTicks, machineTicks, TICKS_PER_SECOND } from "./proc-cpu.js";
import type { Link } from "../services/links/ports.js";
import { createLinkStore } from "../services/links/store.js";
import { LinkResolver } from "../services/redirect/resolver.js";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i++) {
  const next = process.argv[i + 1];
  const isFlag = next === undefined || next.startsWith("--");
  args.set(process.argv[i]!.replace(/^--/, ""), isFlag ? "" : next);
  if (!isFlag) i++;
}
const ENGINE = args.get("engine") ?? "memory";
const LINKS = Number(args.get("links") ?? 10_000);
const DURATION = Number(args.get("duration") ?? 8);
const CONNECTIONS = Number(args.get("connections") ?? 50);
const ROUNDS = Number(args.get("rounds") ?? 2);
const TOPOLOGY = args.get("topology") ?? "embedded";
/** Split topology: also run the analytics consumer (Cassandra counters) and wait until it has drained. */
const DRAIN = args.has("drain");
const DRAIN_LIMIT_MS = 30 * 60_000;
/** Split --drain: analytics consumers sharing the durable. */
const CONSUMERS = Number(args.get("consumers") ?? 1);
/** Split: a directory for the gateway processes' CPU profiles. */
const PROFILE_GATEWAY = args.get("profile-gateway") ?? "";
/** Split: gateway processes, all under load at once. */
const GATEWAYS = Number(args.get("gateways") ?? 1);
const HOT = Math.floor(LINKS / 5);
/** Break the run on purpose (extra redirects behind wrk's back): the bench must then exit 1. */
const SABOTAGE = args.has("sabotage");
/** "door" or "bare": only that server is measured (for profiling with --cpu-prof). */
const ONLY = args.get("only") ?? "";
const TLS = args.has("tls");
const SCHEME = TLS ? "https" : "http";
const TLS_FILES = {
  cert: fileURLToPath(new URL("../testkit/tls/a.crt", import.meta.url)),
  key: fileURLToPath(new URL("../testkit/tls/a.key", import.meta.url)),
};
const TLS_CA = TLS ? readFileSync(TLS_FILES.cert) : undefined;
/** The bench's own requests to a gateway (metrics, health, sabotage): over TLS, trusting the test certificate. */
function get(port: number, pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const options = { host: "127.0.0.1", port, path: pathAndQuery, headers, ...(TLS_CA ? { ca: TLS_CA, servername: "localhost" } : {}) };
    const req = (TLS ? https : http).get(options, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
  });
}
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
  /** CPU of the process under test (all its threads), % of one core, over the run. */
  readonly serverCpu: number;
  /** CPU of wrk, % of one core. */
  readonly wrkCpu: number;
  /** The whole machine, % of one core (200% = both cores busy). */
  readonly machineCpu: number;
  /** CPU of the infra processes this run started (cassandra, nats, ...), % of one core. */
  readonly others: string;
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

const checks = new Checks();

/** Other processes whose CPU each run reports (the servers this bench started itself). */
const watched: [string, number][] = [];

/**
 * One run: a wrk per port, all at once (the connections shared out among them); `serverPids` are
 * the processes answering (their CPU is summed). Latency percentiles are the worst of the wrks'.
 */
async function wrk(name: string, ports: readonly number[], script: string, serverPids: readonly number[], seconds = DURATION): Promise<WrkResult> {
  const cpu0 = serverPids.map((pid) => cpuTicks(pid));
  const others0 = watched.map(([, pid]) => cpuTicks(pid));
  const t0 = performance.now();
  const m0 = machineTicks();
  const outs = await Promise.all(
    ports.map(
      (port, k) =>
        new Promise<string>((resolve, reject) => {
          const connections = Math.floor(CONNECTIONS / ports.length) + (k < CONNECTIONS % ports.length ? 1 : 0);
          // /usr/bin/time reports wrk's own CPU, so a run limited by the load generator shows it.
          const p = spawn("/usr/bin/time", ["-f", "WRK_CPU %U %S", "wrk", "-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", script, `${SCHEME}://127.0.0.1:${port}/`]);
          let s = "";
          p.stdout.on("data", (d: Buffer) => (s += d.toString()));
          p.stderr.on("data", (d: Buffer) => (s += d.toString()));
          p.on("error", reject);
          p.on("exit", () => resolve(s));
        }),
    ),
  );
  const wall = (performance.now() - t0) / 1000;
  const cpu = serverPids.reduce((a, pid, i) => a + cpuTicks(pid) - cpu0[i]!, 0) / TICKS_PER_SECOND;
  const others = watched.map(([name, pid], i) => `${name} ${Math.round(((cpuTicks(pid) - others0[i]!) / TICKS_PER_SECOND / wall) * 100)}%`).join(", ");
  const m1 = machineTicks();
  const parts = outs.map((out) => {
    // A wrk that could not run (bad script, refused connection) prints no summary: never a row of NaN.
    if (!/Requests\/sec:/.test(out)) throw new Error(`wrk printed no result for ${name}:\n${out}`);
    const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
    const lat = (pct: string) => {
      const m = new RegExp(`\\s${pct}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
      return m ? ms(m[1]!, m[2]!) : NaN;
    };
    const wrkCpu = /WRK_CPU ([\d.]+) ([\d.]+)/.exec(out);
    const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    return {
      rps: num(/Requests\/sec:\s+([\d.]+)/),
      p50ms: lat("50"),
      p99ms: lat("99"),
      requests: num(/(\d+) requests in/),
      non3xx: /Non-2xx or 3xx responses: (\d+)/.exec(out) ? num(/Non-2xx or 3xx responses: (\d+)/) : 0,
      errors: errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
      wrkCpu: wrkCpu ? ((Number(wrkCpu[1]) + Number(wrkCpu[2])) / wall) * 100 : NaN,
    };
  });
  const sum = (f: (p: (typeof parts)[number]) => number) => parts.reduce((a, p) => a + f(p), 0);
  return {
    name,
    rps: sum((p) => p.rps),
    p50ms: Math.max(...parts.map((p) => p.p50ms)),
    p99ms: Math.max(...parts.map((p) => p.p99ms)),
    requests: sum((p) => p.requests),
    non3xx: sum((p) => p.non3xx),
    errors: sum((p) => p.errors),
    serverCpu: (cpu / wall) * 100,
    wrkCpu: sum((p) => p.wrkCpu),
    machineCpu: ((m1.busy - m0.busy) / (m1.total - m0.total)) * os.cpus().length * 100,
    others,
  };
}

async function startBare(): Promise<{ port: number; close(): Promise<void> }> {
  const targets = new Map<string, string>();
  for (let i = 0; i < LINKS; i++) targets.set(codeOf(i), urlOf(i));
  const handler: http.RequestListener = (req, res) => {
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
  };
  const server = TLS ? https.createServer({ cert: TLS_CA, key: readFileSync(TLS_FILES.key) }, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Redirects the door counted, summed over the gateways. */
async function redirectsServed(gatewayPorts: readonly number[]): Promise<number> {
  const counts = await Promise.all(gatewayPorts.map((port) => redirectsServedBy(port)));
  return counts.reduce((a, b) => a + b, 0);
}

async function redirectsServedBy(gatewayPort: number): Promise<number> {
  const { text } = await get(gatewayPort, "/metrics");
  let n = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("gateway_redirect_responses_total{")) continue;
    if (!/status="30[12]"/.test(line)) continue;
    n += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return n;
}

/** gateway_redirect_responses_total summed by its cache label ("hit" / "miss"), over the gateways. */
async function doorCounts(gatewayPorts: readonly number[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const port of gatewayPorts) {
    const { text } = await get(port, "/metrics");
    for (const line of text.split("\n")) {
      const m = /^gateway_redirect_responses_total\{.*cache="(\w+)".*\} (\d+)/.exec(line);
      if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
    }
  }
  return out;
}

/** A metric without labels, summed over the gateways. */
async function metric(gatewayPorts: readonly number[], name: string): Promise<number> {
  let n = 0;
  for (const port of gatewayPorts) {
    const { text } = await get(port, "/metrics");
    const line = text.split("\n").find((l) => l.startsWith(name));
    n += line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
  }
  return n;
}

function table(rows: readonly WrkResult[]): string {
  const lines = [
    "| run | req/s | p50 ms | p99 ms | requests | non-3xx | socket errors | CPU % server / wrk / machine | server CPU us/req |",
    "|---|---:|---:|---:|---:|---:|---:|---|---:|",
  ];
  for (const r of rows) {
    const cpu = `${r.serverCpu.toFixed(0)} / ${r.wrkCpu.toFixed(0)} / ${r.machineCpu.toFixed(0)}`;
    const perReq = ((r.serverCpu / 100 / r.rps) * 1e6).toFixed(1);
    lines.push(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.requests} | ${r.non3xx} | ${r.errors} | ${cpu} | ${perReq} |`);
  }
  return lines.join("\n");
}

/** `concurrency` loops calling op(0), op(1), ... for `seconds` (or until `count` calls when given). */
async function closedLoop(name: string, seconds: number, concurrency: number, op: (i: number) => Promise<unknown>, count?: number) {
  const lat: number[] = [];
  const end = Date.now() + seconds * 1000;
  let i = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (count !== undefined ? i < count : Date.now() < end) {
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
  requireTool("wrk", "apt-get install wrk");
  requireTool("/usr/bin/time", "apt-get install time");
  console.log(provenance());
  const env: Record<string, string | undefined> = {
    ...process.env,
    SWITCHBOARD_ENGINE: ENGINE,
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
    SWITCHBOARD_LOG_LEVEL: "warn",
    // The counters below are scraped from the gateway's own port; the mesh's metrics listener is
    // not started in-process (embedded) and sits on a port of its own otherwise.
    SWITCHBOARD_METRICS_ON_PUBLIC_PORT: "true",
    SWITCHBOARD_METRICS_PORT: "0",
    ...(TLS ? { SWITCHBOARD_GATEWAY_TLS_CERT_FILE: TLS_FILES.cert, SWITCHBOARD_GATEWAY_TLS_KEY_FILE: TLS_FILES.key } : {}),
  };
  if (TOPOLOGY !== "embedded" && TOPOLOGY !== "split") throw new Error(`--topology ${TOPOLOGY}: expected embedded or split`);
  if (TOPOLOGY === "split" && ENGINE !== "cluster") throw new Error("--topology split needs --engine cluster (the memory engine is one process)");
  if (!Number.isInteger(GATEWAYS) || GATEWAYS < 1 || (GATEWAYS > 1 && TOPOLOGY !== "split")) throw new Error(`--gateways ${GATEWAYS}: a whole number >= 1, above 1 only with --topology split`);
  let infra: Infra | undefined;
  if (ENGINE === "cluster") {
    if (!env.SWITCHBOARD_CASSANDRA_CONTACT_POINTS) {
      console.log("no SWITCHBOARD_CASSANDRA_CONTACT_POINTS: starting Cassandra, ZooKeeper, NATS and Redis for this run ...");
      infra = await startInfra();
      Object.assign(env, infraEnv(infra.info));
      watched.push(["cassandra", infra.cassandra.pid], ["nats", infra.nats.pid], ["redis", infra.redis.pid], ["zookeeper", infra.zookeeper.pid]);
    }
    env.SWITCHBOARD_CASSANDRA_KEYSPACE ??= `bench_redirect_${Date.now().toString(36)}`;
    env.SWITCHBOARD_JWT_HS256_SECRET ??= "bench-redirect-secret-0123456789abcdef0123456789";
    env.SWITCHBOARD_CODE_KEY ??= "bench-redirect-code-key-0123456789abcdef";
  }
  try {
    await measure(env);
  } finally {
    await infra?.stop();
  }
}

async function measure(env: Record<string, string | undefined>): Promise<void> {
  const config = loadConfig(env as Record<string, string>);
  const log = pino({ level: "warn" });
  let engine: Engine;
  let gatewayPorts: number[];
  let gatewayPids: number[];
  let closeMesh: () => Promise<void>;
  if (TOPOLOGY === "split") {
    engine = await openEngine(config, log);
    gatewayPorts = [];
    gatewayPids = [];
    const procs: ReturnType<typeof spawnSwitchboard>[] = [];
    closeMesh = async () => {
      for (const proc of procs) await proc.stop();
      await engine.close();
    };
    const own = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith("SWITCHBOARD_") && v !== undefined)) as Record<string, string>;
    // `--profile-gateway DIR`: a V8 CPU profile of each gateway process, written when it exits.
    const profileEnv: Record<string, string> = PROFILE_GATEWAY ? { NODE_OPTIONS: `--import ${new URL("./cpu-prof-preload.mjs", import.meta.url).pathname}`, BENCH_CPU_PROF_DIR: PROFILE_GATEWAY } : {};
    for (let g = 0; g < GATEWAYS; g++) {
      const port = await freePort();
      const proc = spawnSwitchboard(["gateway"], { ...own, ...profileEnv, SWITCHBOARD_GATEWAY_PORT: String(port) });
      procs.push(proc);
      await waitFor("the gateway process", async () => ((await get(port, "/healthz").catch(() => undefined))?.status === 200 ? true : undefined)).catch(
        async (e: unknown) => {
          await closeMesh();
          throw new Error(`${String(e)}\n${proc.output()}`);
        },
      );
      gatewayPorts.push(port);
      gatewayPids.push(proc.child.pid!);
    }
  } else {
    const mesh = await runEmbedded(config, log, { env: env as Record<string, string> });
    engine = mesh.engine!;
    gatewayPorts = [mesh.gatewayPort!];
    gatewayPids = [process.pid];
    closeMesh = () => mesh.close();
  }
  const barePorts = (port: number) => gatewayPorts.map(() => port);
  const barePids = [process.pid];
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
    console.log(`engine ${ENGINE}, topology ${TOPOLOGY}${GATEWAYS > 1 ? ` (${GATEWAYS} gateways)` : ""}: seeded ${LINKS} links in ${Date.now() - t0} ms; node ${process.version}; ${os.cpus().length}x ${os.cpus()[0]?.model}`);
    // Every link read once through Redis and the database: fills Redis (as traffic would have)
    // and warms the database's read path (Cassandra's JIT), so the runs measure the door, not a
    // cold cluster.
    const warmResolver = new LinkResolver(engine.cache, store);
    const tWarm = Date.now();
    await closedLoop("warm", 0, 50, (i) => warmResolver.resolve(codeOf(i % LINKS)), LINKS);
    warmResolver.close();
    console.log(`read every link once through ${ENGINE === "cluster" ? "Redis and Cassandra" : "the memory cache and store"} in ${Date.now() - tWarm} ms`);
    const bare = await startBare();
    // Warm-up (JIT, near-cache): counted in redirects served like every other door request.
    await wrk("warm-up bare", barePorts(bare.port), script, barePids, 2);
    const doorWarmUp = await wrk("warm-up door", gatewayPorts, script, gatewayPids, 2);
    const rows: WrkResult[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const order = ONLY === "door" ? ["door"] : ONLY === "bare" ? ["bare"] : r % 2 === 1 ? ["bare", "door"] : ["door", "bare"];
      for (const which of order) {
        // For --cpu-prof: the measured window on the profile's clock (monotonic, microseconds).
        if (ONLY !== "") console.log(`window start ${process.hrtime.bigint() / 1000n}`);
        rows.push(
          which === "bare"
            ? await wrk(`(a) bare node:${SCHEME} 302 #${r}`, barePorts(bare.port), script, barePids)
            : await wrk(`(b) gateway redirect door${GATEWAYS > 1 ? `s (${GATEWAYS})` : ""} #${r}`, gatewayPorts, script, gatewayPids),
        );
        if (ONLY !== "") console.log(`window end ${process.hrtime.bigint() / 1000n}`);
      }
    }
    await bare.close();
    console.log(`\n${table(rows)}`);
    for (const r of [doorWarmUp, ...rows]) {
      checks.check(r.non3xx === 0, `${r.name}: every answer a redirect (${r.non3xx} non-3xx)`);
      checks.check(r.errors === 0, `${r.name}: no socket errors (${r.errors})`);
    }
    if (SABOTAGE) {
      // Proves the checks bite: redirects wrk never sent, answered to a link-preview bot (served
      // by the door, not a human click), so both the served and the clicks checks must fail.
      for (let i = 0; i < 5; i++) {
        await get(gatewayPorts[0]!, `/${codeOf(i)}`, { "user-agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)" });
      }
      console.log("--sabotage: 5 redirects outside wrk, to a preview bot");
    }
    // "Served" counted twice: by the load generator and by the door. The door also counts what
    // wrk cut off at the end of a run (at most one in-flight request per connection).
    const doorRuns = [doorWarmUp, ...rows.filter((x) => x.name.startsWith("(b)"))];
    const sentByWrk = doorRuns.reduce((a, x) => a + x.requests, 0);
    const countedByDoor = await redirectsServed(gatewayPorts);
    checks.check(
      countedByDoor >= sentByWrk && countedByDoor <= sentByWrk + CONNECTIONS * doorRuns.length,
      `redirects: wrk completed ${sentByWrk}, the door counted ${countedByDoor} (may exceed by at most ${CONNECTIONS} per run)`,
    );
    if (watched.length > 0) for (const r of rows) console.log(`${r.name}: ${r.others}`);
    const avg = (prefix: string) => {
      const xs = rows.filter((x) => x.name.startsWith(prefix));
      return xs.reduce((a, x) => a + x.rps, 0) / xs.length;
    };
    const ratio = avg("(b)") / avg("(a)");
    const byCache = await doorCounts(gatewayPorts);
    console.log(`door answers by near-cache outcome (whole run incl. warm-up): ${[...byCache].map(([k, v]) => `${k} ${v}`).join(", ")}`);
    console.log(`\ndoor/bare throughput: ${ratio.toFixed(2)}x (avg ${avg("(b)").toFixed(0)} vs ${avg("(a)").toFixed(0)} req/s)`);

    if (TOPOLOGY === "split") {
      await clicksInStream(engine, gatewayPorts, gatewayPids);
      if (DRAIN) {
        // The redirect service's analytics consumers (CONSUMERS of them on one durable), here in
        // the bench process, into Cassandra. They start after the load, so the whole backlog is
        // drained at their pace: that rate must keep up with the door's.
        // Schema first (the redirect service migrates at start, not on its first click).
        await createClickStatsStore(engine).get(codeOf(0));
        const t0 = Date.now();
        const consumers = Array.from({ length: CONSUMERS }, () => startClickConsumer({ bus: engine.bus, store: createClickStatsStore(engine), log }));
        try {
          await drainRate(consumers, gatewayPorts, t0, avg("(b)"));
          await clicksRecorded(engine, gatewayPorts);
        } finally {
          for (const c of consumers) await c.close();
        }
      }
    } else await clicksRecorded(engine, gatewayPorts);

    if (ONLY === "door") return;
    await missPath(engine);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await closeMesh();
  }
}

/**
 * Split --drain: waits until the consumers have recorded as many clicks as the door served
 * (their own counters, cheap to poll; the store is checked exactly afterwards) and checks that
 * they recorded at least as fast as the door served: backlog / time to drain it.
 */
async function drainRate(consumers: readonly ClickConsumer[], gatewayPorts: readonly number[], t0: number, doorRps: number): Promise<void> {
  const served = await redirectsServed(gatewayPorts);
  const counted = () => consumers.reduce((n, c) => n + c.stats.counted, 0);
  const self0 = cpuTicks(process.pid);
  const others0 = watched.map(([, pid]) => cpuTicks(pid));
  const m0 = machineTicks();
  let lastProgress = Date.now();
  while (counted() < served && Date.now() - t0 < DRAIN_LIMIT_MS) {
    await new Promise((r) => setTimeout(r, 50));
    if (Date.now() - lastProgress >= 10_000) {
      lastProgress = Date.now();
      const lag = consumers[0]!.lag;
      console.log(`  draining: recorded ${counted()} of ${served} (${Math.round((Date.now() - t0) / 1000)} s; lag ${lag?.pendingMessages ?? "?"} messages)`);
    }
  }
  const ms = Date.now() - t0;
  const rate = counted() / (ms / 1000);
  const m1 = machineTicks();
  const pct = (ticks: number) => `${Math.round((ticks / TICKS_PER_SECOND / (ms / 1000)) * 100)}%`;
  console.log(
    `CPU while draining (% of one core): consumers (bench process) ${pct(cpuTicks(process.pid) - self0)}, ` +
      watched.map(([name, pid], i) => `${name} ${pct(cpuTicks(pid) - others0[i]!)}`).join(", ") +
      `; machine ${Math.round(((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * 100 * os.cpus().length)}% (all processes, other users too)`,
  );
  const failures = consumers.reduce((n, c) => n + c.stats.failures, 0);
  console.log(
    `
analytics consumer${consumers.length > 1 ? `s (${consumers.length})` : ""}: recorded ${counted()} clicks in ${ms} ms = ${rate.toFixed(0)} clicks/s ` +
      `(${failures} failed batch writes, redelivered) vs the door's ${doorRps.toFixed(0)} redirects/s -> ${(rate / doorRps).toFixed(2)}x`,
  );
  checks.check(rate >= doorRps, `the consumer drains at >= 1.0x the door's redirects/s (${(rate / doorRps).toFixed(2)}x)`);
}

/** Embedded: every redirect served is a human click in the ClickStatsStore once the consumer drained. */
async function clicksRecorded(engine: Engine, gatewayPorts: readonly number[]): Promise<void> {
  // No click is lost. `served` is re-read on every pass: when wrk stops, up to --connections
  // requests may still be in the door (a near-cache miss waiting on Redis / the database while
  // the store is busy); they are answered (to a closed socket), counted and clicked a moment
  // later, so a single early read could come out below the clicks recorded.
  let served = 0;
  let servedAtStop = -1;
  const stats = createClickStatsStore(engine);
  const tDrain = Date.now();
  let lastProgress = tDrain;
  let human = 0;
  let total = 0;
  for (;;) {
    served = await redirectsServed(gatewayPorts);
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
    if ((total >= served && (await redirectsServed(gatewayPorts)) === served) || Date.now() - tDrain > DRAIN_LIMIT_MS) break;
    if (Date.now() - lastProgress >= 10_000) {
      lastProgress = Date.now();
      console.log(`  draining: recorded ${total} of ${served} served (${Math.round((Date.now() - tDrain) / 1000)} s)`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const dropped = await metric(gatewayPorts, "redirect_clicks_dropped_total");
  console.log(
    `\nclicks: redirects served ${served} (${servedAtStop} when wrk stopped), recorded human ${human}, recorded total ${total}, dropped ${dropped}, drained in ${Date.now() - tDrain} ms -> ${human === served ? "OK: equal" : "MISMATCH"}`,
  );
  checks.check(served > 0 && human === served && dropped === 0, `clicks recorded (human ${human}) == redirects served (${served}), none dropped (${dropped})`);
}

/**
 * Split: every redirect served is a click in the CLICKS stream, published by one of those gateway
 * processes (read with fresh durables filtered on their batch subjects, counted per ClickEvent).
 */
async function clicksInStream(engine: Engine, gatewayPorts: readonly number[], gatewayPids: readonly number[]): Promise<void> {
  const subjects = gatewayPids.map((pid) => clickBatchSubject(`${os.hostname()}-${pid}`));
  const subject = subjects.join(", ");
  let clicks = 0;
  let human = 0;
  const consumptions = await Promise.all(
    subjects.map((filterSubject, k) =>
      engine.bus.consume(
        CLICKS_STREAM,
        `bench-verify-${Date.now().toString(36)}-${k}`,
        (m) => {
          for (const c of decodeClickBatch(m.data)) {
            clicks++;
            if (isHumanClick(c.cls, c.isHead)) human++;
          }
          m.ack();
        },
        { filterSubject },
      ),
    ),
  );
  const t0 = Date.now();
  let served = await redirectsServed(gatewayPorts);
  const servedAtStop = served;
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await redirectsServed(gatewayPorts);
    if ((clicks >= now && now === served) || Date.now() - t0 > 120_000) break;
    served = now;
  }
  for (const c of consumptions) await c.stop();
  const dropped = await metric(gatewayPorts, "redirect_clicks_dropped_total");
  console.log(
    `\nclicks (CLICKS stream, ${subject}): redirects served ${served} (${servedAtStop} when wrk stopped), clicks in the stream ${clicks}, human ${human}, dropped ${dropped}, read in ${Date.now() - t0} ms -> ${human === served && clicks === served ? "OK: equal" : "MISMATCH"}`,
  );
  checks.check(served > 0 && human === served && clicks === served && dropped === 0, `clicks in the stream (${clicks}, human ${human}) == redirects served (${served}), none dropped (${dropped})`);
}

/** Cache-miss path, in-process through the shared resolver module. */
async function missPath(engine: Engine): Promise<void> {
  const store = await createLinkStore(engine);
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
}

main().then(
  () => checks.exit(),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
