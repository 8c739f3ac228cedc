/**
 * Benchmark (not a test): link creation per second through the shortener's gRPC server on the
 * cluster engine (real Cassandra + ZooKeeper + NATS + Redis started by testkit startInfra()).
 *
 *   npx tsx bench/link-create.ts [--requests 20000] [--concurrency 64] [--clients 4] [--mode generated|alias|idem]
 *                                [--warmup 10000] [--loader h2load|fork|inproc] [--owners 4]
 *   npx tsx bench/link-create.ts --through gateway [--paths straight,connect,rest] [--rounds 1] [--profile gateway,shortener]
 *     the shortener, tokenrange and gateway as separate processes; creates straight into the
 *     shortener side by side with Connect and REST through the gateway (bench/link-create-gateway.ts)
 *
 * mode generated: CreateLink without alias (leased code + plain INSERT + listing row);
 * mode alias: custom alias (LWT INSERT IF NOT EXISTS); mode idem: generated + idempotency_key
 * (adds an idempotency read + LWT). `--clients` HTTP/2 connections share `--concurrency` in-flight calls.
 * `--loader h2load` (default when /usr/bin/h2load exists and mode is generated) drives the server
 * with h2load (nghttp2-client, C): one fixed CreateLink frame, `--owners` h2load processes (default
 * = --clients) run in parallel, each with its own caller identity and a share of the connections
 * and requests, `-m concurrency/clients` streams per connection, `-t1`. h2load cannot vary the
 * body, so it only does mode generated. Its "succeeded" is HTTP-level only, so every run is
 * checked against the server's grpc_server_handled_total{grpc_method="CreateLink"} counter (all
 * loaders): any non-OK call, or OK != requests sent, fails the bench (exit 1).
 * `--loader fork` runs the grpc-js load generator in a child process (child_process.fork of
 * this file, 16 callers), so the server process only does server work; `--loader inproc` runs it on
 * the server's event loop (the original setup). Prints creates/s and p50/p99 latency after a warm-up
 * (default 10,000 creates: Cassandra's JIT needs it), and the CPU used by every process during
 * the measured run (from /proc/<pid>/stat), as % of one core.
 */
import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import pino from "pino";
import cassandra from "cassandra-driver";
import { CreateLinkRequestSchema, ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { openEngine } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { grpcService, startGrpcServer } from "../platform/grpc/server.js";
import { verifiedIdentity } from "../platform/grpc/verified-identity.js";
import { createMetrics, type Metrics } from "../platform/metrics.js";
import { shortenerModule } from "../services/shortener/module.js";
import { serveService } from "../services/serve.js";
import { tokenrangeModule } from "../services/tokenrange/module.js";
import { assertionHeaders, testMeshKey } from "../testkit/mesh-identity.js";
import { infraEnv, startInfra } from "../testkit/servers/index.js";
import { EXIT_MISSING_TOOL, provenance } from "./bench-guard.js";
import { childrenTicks, cpuTicks, machineTicks, TICKS_PER_SECOND } from "./proc-cpu.js";
import { grpcFrame, H2LOAD_INSTALL_HINT, hasH2load, percentile, startH2load } from "./h2load.js";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const REQUESTS = Number(args.get("requests") ?? 20_000);
const CONCURRENCY = Number(args.get("concurrency") ?? 64);
const CLIENTS = Number(args.get("clients") ?? 4);
const MODE = args.get("mode") ?? "generated";
const WARMUP = Number(args.get("warmup") ?? 10_000);
const LOADER_ARG = args.get("loader");
const OWNERS_ARG = args.get("owners");
const IS_CHILD = args.has("child-port");

interface RunResult {
  secs: number;
  ok: number;
  failed: number;
  p50: number;
  p99: number;
  /** CPU ticks the load generator used during the run, when it cannot be read from /proc/<pid>/stat. */
  loaderTicks?: number;
}
interface RunRequest {
  n: number;
  tag: string;
}

/** The load generator: CONCURRENCY loops over CLIENTS channels to 127.0.0.1:port. */
function loadGenerator(port: number): { run(r: RunRequest): Promise<RunResult>; close(): void } {
  const clients = Array.from({ length: CLIENTS }, (_, i) =>
    createGrpcClient(ShortenerService, `127.0.0.1:${port}`, { channelOptions: { "grpc.primary_user_agent": `bench-${i}` }, defaultTimeoutMs: 30_000 }),
  );
  const run = async ({ n, tag }: RunRequest): Promise<RunResult> => {
    let next = 0;
    let failed = 0;
    const lat: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, w) => {
        const client = clients[w % CLIENTS]!;
        const userId = `bench-user-${w % 16}`;
        for (let i = next++; i < n; i = next++) {
          // Signed per call, as the gateway does: assertions live 60 s, a run may be longer.
          const opts = { headers: assertionHeaders(userId, ShortenerService.method.createLink) };
          const req =
            MODE === "alias"
              ? { longUrl: `https://example.com/${tag}/${i}`, customAlias: `a-${tag}-${i}` }
              : MODE === "idem"
                ? { longUrl: `https://example.com/${tag}/${i}`, idempotencyKey: `${tag}-${i}` }
                : { longUrl: `https://example.com/${tag}/${i}` };
          const s = performance.now();
          try {
            await client.createLink(req, opts);
            lat.push(performance.now() - s);
          } catch (e) {
            if (failed++ < 3) console.error(String(e));
          }
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
    return { secs, ok: lat.length, failed, p50: pct(0.5), p99: pct(0.99) };
  };
  return { run, close: () => clients.forEach((c) => c.close()) };
}

/**
 * --loader h2load: `owners` h2load processes in parallel, process i with caller bench-user-<i>,
 * its share of the CLIENTS connections (CONCURRENCY / CLIENTS streams each) and of the requests.
 * Every call sends the same CreateLink frame. Latencies come from h2load's --log-file; the CPU of
 * the h2load processes from this process's cutime + cstime (they are reaped before run() returns).
 */
function h2loadGenerator(port: number, owners: number): { run(r: RunRequest): Promise<RunResult>; close(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), "bench-link-create-"));
  const bodyFile = path.join(dir, "create-link.bin");
  const req = create(CreateLinkRequestSchema, { longUrl: "https://example.com/bench/h2load" });
  writeFileSync(bodyFile, grpcFrame(toBinary(CreateLinkRequestSchema, req)));
  const url = `http://127.0.0.1:${port}/${ShortenerService.typeName}/${ShortenerService.method.createLink.name}`;
  const streams = CONCURRENCY / CLIENTS;
  /** Connections before process i: process i gets conns(i + 1) - conns(i). */
  const conns = (i: number) => Math.floor((CLIENTS * i) / owners);
  const run = async ({ n, tag }: RunRequest): Promise<RunResult> => {
    const ticks0 = childrenTicks(process.pid);
    const t0 = performance.now();
    const procs = Array.from({ length: owners }, (_, i) =>
      startH2load({
        url,
        requests: Math.floor((n * conns(i + 1)) / CLIENTS) - Math.floor((n * conns(i)) / CLIENTS),
        clients: conns(i + 1) - conns(i),
        streams,
        bodyFile,
        // One assertion per h2load process: valid 60 s, far longer than one run of it.
        headers: assertionHeaders(`bench-user-${i}`, ShortenerService.method.createLink),
        logFile: path.join(dir, `${tag}-${i}.log`),
      }),
    );
    const settled = await Promise.allSettled(procs.map((p) => p.done));
    const secs = (performance.now() - t0) / 1000;
    const loaderTicks = childrenTicks(process.pid) - ticks0;
    const failures = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []));
    if (failures.length > 0) throw failures[0];
    const results = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    const lat = results.flatMap((r) => r.durationsMs).sort((a, b) => a - b);
    const ok = results.reduce((a, r) => a + r.succeeded, 0);
    const total = results.reduce((a, r) => a + r.total, 0);
    const non200 = results.reduce((a, r) => a + r.non200, 0);
    if (total !== n || non200 > 0) console.error(`h2load: ${total} requests (asked ${n}), ${non200} log rows without HTTP 200`);
    return { secs, ok, failed: total - ok, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), loaderTicks };
  };
  return { run, close: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Child side of --loader fork: runs what the parent asks for, answers over IPC. */
function childMain(): void {
  const gen = loadGenerator(Number(args.get("child-port")));
  process.on("message", (m: RunRequest | "exit") => {
    if (m === "exit") {
      gen.close();
      process.exit(0);
    }
    void gen.run(m).then((r) => process.send!(r));
  });
  process.send!("ready");
}

/** grpc_server_handled_total{ShortenerService/CreateLink} by grpc_code. */
async function createLinkCodes(metrics: Metrics): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const v of (await metrics.rpcHandled.get()).values) {
    if (v.labels.grpc_service !== ShortenerService.typeName || v.labels.grpc_method !== ShortenerService.method.createLink.name) continue;
    const code = String(v.labels.grpc_code);
    counts.set(code, (counts.get(code) ?? 0) + v.value);
  }
  return counts;
}
/** Server-side check of one run: every request sent answered OK, nothing else. */
function checkRun(what: string, sent: number, before: Map<string, number>, after: Map<string, number>): boolean {
  const delta = [...after].map(([code, v]) => [code, v - (before.get(code) ?? 0)] as const).filter(([, v]) => v > 0);
  const ok = delta.find(([code]) => code === "OK")?.[1] ?? 0;
  const nonOk = delta.filter(([code]) => code !== "OK");
  const nonOkCount = nonOk.reduce((a, [, v]) => a + v, 0);
  const pass = nonOkCount === 0 && ok === sent;
  console.log(
    `CHECK ${what}: server grpc_server_handled_total{grpc_method="CreateLink"}: OK ${ok}, non-OK ${nonOkCount}` +
      `${nonOk.length ? ` (${nonOk.map(([c, v]) => `${c} ${v}`).join(", ")})` : ""}; requests sent ${sent}: ${pass ? "pass" : "FAIL"}`,
  );
  return pass;
}

async function main(): Promise<void> {
  const h2loadPresent = LOADER_ARG === undefined || LOADER_ARG === "h2load" ? await hasH2load() : false;
  const LOADER = LOADER_ARG ?? (h2loadPresent && MODE === "generated" ? "h2load" : "fork");
  const OWNERS = LOADER === "h2load" ? Number(OWNERS_ARG ?? CLIENTS) : Math.min(16, CONCURRENCY);
  if (LOADER_ARG === undefined && MODE === "generated" && !h2loadPresent) {
    // Never a silent switch to another load generator: its figures are not comparable.
    console.error(`${H2LOAD_INSTALL_HINT} (the default load generator; or pass --loader fork for grpc-js clients)`);
    process.exit(EXIT_MISSING_TOOL);
  }
  if (LOADER_ARG === undefined && LOADER !== "h2load") console.log(`--mode ${MODE} needs distinct requests: using --loader fork`);
  console.log(provenance());
  if (!["h2load", "fork", "inproc"].includes(LOADER)) throw new Error(`--loader ${LOADER}: expected h2load, fork or inproc`);
  if (LOADER === "h2load") {
    const usage = (msg: string): never => {
      console.error(msg);
      process.exit(1);
    };
    if (!h2loadPresent) usage(`${H2LOAD_INSTALL_HINT} (needed by --loader h2load; or use --loader fork)`);
    if (MODE !== "generated") usage(`--loader h2load sends one fixed request, so it only does --mode generated; use --loader fork for --mode ${MODE}`);
    if (!Number.isInteger(CONCURRENCY / CLIENTS)) usage(`--loader h2load: --concurrency (${CONCURRENCY}) must be a multiple of --clients (${CLIENTS})`);
    if (!Number.isInteger(OWNERS) || OWNERS < 1 || OWNERS > CLIENTS) usage(`--owners (${OWNERS}) must be 1..--clients (${CLIENTS}): one h2load process per owner`);
    if (Math.min(WARMUP || REQUESTS, REQUESTS) < CLIENTS) usage(`--requests and --warmup must be >= --clients (${CLIENTS}) for h2load`);
  }
  console.log(`starting infra ...`);
  const infra = await startInfra({ log: (l) => console.log(l) });
  const keyspace = `bench_links_${Date.now().toString(36)}`;
  process.env["SWITCHBOARD_CODE_KEY"] ??= "bench-link-create-key-0123456789";
  const config = loadConfig({ ...infraEnv(infra.info), SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace, SWITCHBOARD_PUBLIC_BASE_URL: "https://sb.example" });
  const engine = await openEngine(config, silentLog);
  const log = pino({ level: "warn" });
  try {
    for (let i = 0; i < 600 && !(await engine.readiness()).ready; i++) await new Promise((r) => setTimeout(r, 100));
    // Code ranges come from a token-range server over gRPC, as in production.
    const tokenrange = await serveService(tokenrangeModule, { config, log, engine, upstreamAddress: () => "" }, { host: "127.0.0.1", port: 0 });
    const running = await shortenerModule.create({ config, log, engine, upstreamAddress: () => `127.0.0.1:${tokenrange.port}` });
    const metrics = createMetrics();
    const server = await startGrpcServer({
      services: [grpcService(ShortenerService, running.impl)],
      port: 0,
      log,
      metrics,
      contextValues: verifiedIdentity(testMeshKey, log),
    });

    let run: (r: RunRequest) => Promise<RunResult>;
    let closeLoader: () => void;
    let loaderPid: number | undefined;
    if (LOADER === "h2load") {
      const gen = h2loadGenerator(server.port, OWNERS);
      run = gen.run;
      closeLoader = gen.close;
    } else if (LOADER === "fork") {
      const passOn = [...args].filter(([k]) => ["concurrency", "clients", "mode"].includes(k)).flatMap(([k, v]) => [`--${k}`, v]);
      const child = fork(fileURLToPath(import.meta.url), ["--child-port", String(server.port), ...passOn], {
        execArgv: process.execArgv.filter((a) => !a.startsWith("--cpu-prof")),
      });
      loaderPid = child.pid;
      await new Promise<void>((resolve, reject) => {
        child.once("message", () => resolve());
        child.once("exit", (c) => reject(new Error(`load generator exited with ${c}`)));
      });
      run = (r) =>
        new Promise((resolve) => {
          child.once("message", (m) => resolve(m as RunResult));
          child.send(r);
        });
      closeLoader = () => child.send("exit");
    } else {
      const gen = loadGenerator(server.port);
      run = gen.run;
      closeLoader = gen.close;
    }

    let passed = true;
    if (WARMUP > 0) {
      const c0 = await createLinkCodes(metrics);
      const w = await run({ n: WARMUP, tag: `w${randomUUID().slice(0, 4)}` });
      console.log(`warm-up: ${WARMUP} creates, ${Math.round(w.ok / w.secs)}/s, failed ${w.failed}`);
      passed = checkRun("warm-up", WARMUP, c0, await createLinkCodes(metrics)) && passed;
    }
    const pids: [string, number | undefined][] = [
      ["server (node)", process.pid],
      ...(LOADER === "h2load" ? [] : [["load generator (node)", loaderPid] as [string, number | undefined]]),
      ["cassandra (java)", infra.cassandra.pid],
      ["zookeeper (java)", infra.zookeeper.pid],
      ["nats", infra.nats.pid],
      ["redis", infra.redis.pid],
    ];
    const before = pids.map(([, p]) => (p ? cpuTicks(p) : 0));
    const m0 = machineTicks();
    const c0 = await createLinkCodes(metrics);
    const r = await run({ n: REQUESTS, tag: `m${randomUUID().slice(0, 4)}` });
    const after = pids.map(([, p]) => (p ? cpuTicks(p) : 0));
    const m1 = machineTicks();
    const c1 = await createLinkCodes(metrics);
    const creates = r.ok / r.secs;
    console.log(
      `RESULT mode=${MODE} loader=${LOADER} requests=${REQUESTS} concurrency=${CONCURRENCY} clients=${CLIENTS} owners=${OWNERS} warmup=${WARMUP}: ` +
        `${Math.round(creates)} creates/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ok ${r.ok}, failed ${r.failed}`,
    );
    const rows = pids.flatMap(([name, p], i) => (p ? [{ name, ticks: after[i]! - before[i]! }] : []));
    if (r.loaderTicks !== undefined) rows.splice(1, 0, { name: `load generator (h2load)`, ticks: r.loaderTicks });
    const pctOf = (ticks: number) => (ticks / TICKS_PER_SECOND / r.secs) * 100;
    const split = rows
      .map(({ name, ticks }) => `${name} ${Math.round(pctOf(ticks))}% (${((pctOf(ticks) / 100 / creates) * 1000).toFixed(2)} ms/create)`)
      .join(", ");
    const cores = availableParallelism();
    const machine = ((m1.busy - m0.busy) / (m1.total - m0.total)) * cores * 100;
    const ours = rows.reduce((a, { ticks }) => a + pctOf(ticks), 0);
    console.log(
      `CPU during the measured run (% of one core): ${split}; machine ${Math.round(machine)}% of ${cores * 100}% ` +
        `(everything else, incl. kernel threads and other users: ${Math.round(Math.max(0, machine - ours))}%)`,
    );
    passed = checkRun("measured run", REQUESTS, c0, c1) && passed;
    closeLoader();
    await server.shutdown(1_000);
    await running.close?.();
    await tokenrange.shutdown(1_000);
    if (!passed) throw new Error("CreateLink calls failed on the server (see CHECK lines above)");
  } finally {
    await engine.close();
    const admin = new cassandra.Client({
      contactPoints: [infra.info.cassandra.contactPoint],
      localDataCenter: infra.info.cassandra.localDataCenter,
      protocolOptions: { port: infra.info.cassandra.port },
    });
    await admin.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).catch(() => undefined);
    await admin.shutdown();
    await infra.stop();
  }
}

if (IS_CHILD) {
  childMain();
} else if (args.has("through")) {
  if (args.get("through") !== "gateway") {
    console.error(`--through ${args.get("through")}: expected gateway`);
    process.exit(1);
  }
  // Split deployment, paths side by side (bench/link-create-gateway.ts); exits with its checks.
  import("./link-create-gateway.js")
    .then((m) => m.mainThroughGateway(args))
    .catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
} else {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
