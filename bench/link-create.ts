/**
 * Benchmark (not a test): link creation per second through the shortener's gRPC server on the
 * cluster engine (real Cassandra + ZooKeeper + NATS + Redis started by testkit startInfra()).
 *
 *   npx tsx bench/link-create.ts [--requests 20000] [--concurrency 64] [--clients 4] [--mode generated|alias|idem]
 *                                [--warmup 10000] [--loader fork|inproc]
 *
 * mode generated: CreateLink without alias (leased code + plain INSERT + listing row);
 * mode alias: custom alias (LWT INSERT IF NOT EXISTS); mode idem: generated + idempotency_key
 * (adds an idempotency read + LWT). `--clients` gRPC channels share `--concurrency` in-flight calls.
 * `--loader fork` (default) runs the load generator in a child process (child_process.fork of
 * this file), so the server process only does server work; `--loader inproc` runs it on the
 * server's event loop (the original setup). Prints creates/s and p50/p99 latency after a warm-up
 * (default 10,000 creates: Cassandra's JIT needs it), and the CPU used by every process during
 * the measured run (from /proc/<pid>/stat), as % of one core.
 */
import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import pino from "pino";
import cassandra from "cassandra-driver";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { openEngine } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { grpcService, startGrpcServer } from "../platform/grpc/server.js";
import { identityHeaders } from "../platform/identity.js";
import { createMetrics } from "../platform/metrics.js";
import { shortenerModule } from "../services/shortener/module.js";
import { infraEnv, startInfra } from "../testkit/servers/index.js";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const REQUESTS = Number(args.get("requests") ?? 20_000);
const CONCURRENCY = Number(args.get("concurrency") ?? 64);
const CLIENTS = Number(args.get("clients") ?? 4);
const MODE = args.get("mode") ?? "generated";
const WARMUP = Number(args.get("warmup") ?? 10_000);
const LOADER = args.get("loader") ?? "fork";
const IS_CHILD = args.has("child-port");

interface RunResult {
  secs: number;
  ok: number;
  failed: number;
  p50: number;
  p99: number;
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
        const opts = { headers: identityHeaders({ userId: `bench-user-${w % 16}`, kind: "user" }) };
        for (let i = next++; i < n; i = next++) {
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

/** utime + stime of a process in clock ticks (100/s on Linux); 0 when it is gone. */
function cpuTicks(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}
/** Busy and total ticks of the whole machine. */
function machineTicks(): { busy: number; total: number } {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - cpu[3]! - (cpu[4] ?? 0), total };
}

async function main(): Promise<void> {
  console.log(`starting infra ...`);
  const infra = await startInfra({ log: (l) => console.log(l) });
  const keyspace = `bench_links_${Date.now().toString(36)}`;
  process.env["SWITCHBOARD_CODE_KEY"] ??= "bench-link-create-key-0123456789";
  const config = loadConfig({ ...infraEnv(infra.info), SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace, SWITCHBOARD_PUBLIC_BASE_URL: "https://sb.example" });
  const engine = await openEngine(config, silentLog);
  const log = pino({ level: "warn" });
  try {
    for (let i = 0; i < 600 && !(await engine.readiness()).ready; i++) await new Promise((r) => setTimeout(r, 100));
    const running = await shortenerModule.create({ config, log, engine });
    const server = await startGrpcServer({ services: [grpcService(ShortenerService, running.impl)], port: 0, log, metrics: createMetrics() });

    let run: (r: RunRequest) => Promise<RunResult>;
    let closeLoader: () => void;
    let loaderPid: number | undefined;
    if (LOADER === "fork") {
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

    if (WARMUP > 0) {
      const w = await run({ n: WARMUP, tag: `w${randomUUID().slice(0, 4)}` });
      console.log(`warm-up: ${WARMUP} creates, ${Math.round(w.ok / w.secs)}/s, failed ${w.failed}`);
    }
    const pids: [string, number | undefined][] = [
      ["server (node)", process.pid],
      ["load generator (node)", loaderPid],
      ["cassandra (java)", infra.cassandra.pid],
      ["zookeeper (java)", infra.zookeeper.pid],
      ["nats", infra.nats.pid],
      ["redis", infra.redis.pid],
    ];
    const before = pids.map(([, p]) => (p ? cpuTicks(p) : 0));
    const m0 = machineTicks();
    const r = await run({ n: REQUESTS, tag: `m${randomUUID().slice(0, 4)}` });
    const after = pids.map(([, p]) => (p ? cpuTicks(p) : 0));
    const m1 = machineTicks();
    console.log(
      `RESULT mode=${MODE} loader=${LOADER} requests=${REQUESTS} concurrency=${CONCURRENCY} clients=${CLIENTS} warmup=${WARMUP}: ` +
        `${Math.round(r.ok / r.secs)} creates/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ok ${r.ok}, failed ${r.failed}`,
    );
    const ticksPerSec = 100;
    const split = pids
      .map(([name, p], i) => (p ? `${name} ${Math.round(((after[i]! - before[i]!) / ticksPerSec / r.secs) * 100)}%` : undefined))
      .filter(Boolean)
      .join(", ");
    const cores = availableParallelism();
    const machine = ((m1.busy - m0.busy) / (m1.total - m0.total)) * cores * 100;
    const ours = pids.reduce((a, [, p], i) => a + (p ? ((after[i]! - before[i]!) / ticksPerSec / r.secs) * 100 : 0), 0);
    console.log(
      `CPU during the measured run (% of one core): ${split}; machine ${Math.round(machine)}% of ${cores * 100}% ` +
        `(everything else, incl. kernel threads and other users: ${Math.round(Math.max(0, machine - ours))}%)`,
    );
    closeLoader();
    await server.shutdown(1_000);
    await running.close?.();
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
} else {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
