/**
 * Benchmark (not a test): idle chat subscribers, issue 12 acceptance (c). Resident memory per
 * Subscribe stream on the gateway and on the chat server, and the CPU the keep-alives cost.
 *
 *   npx tsx bench/chat-idle.ts [--streams 50000] [--connections 1000] [--clients 1] [--keepalive-ms 25000]
 *                              [--window 60] [--warmup 2000] [--open-concurrency 200]
 *   npx tsx bench/chat-idle.ts --streams 10000 --connections 10000 --clients 2    # one stream per connection
 *
 * Topology: cluster engine, every part its own process (chat-kit startSplitChatMesh): Cassandra,
 * ZooKeeper, NATS, Redis, `switchboard tokenrange`, ONE `switchboard chat` and ONE `switchboard
 * gateway`, so each one's resident memory (/proc/<pid>/status VmRSS) and CPU (/proc/<pid>/stat)
 * are its own. The chat server and the gateway start with NODE_OPTIONS="--expose-gc --import
 * bench/gc-on-signal.mjs --max-old-space-size=12288": SIGUSR2 runs a full GC, so RSS is read after garbage is collected.
 * The gateway's stream and connection limits are raised for the run (SWITCHBOARD_GATEWAY_MAX_STREAMS,
 * _MAX_CONNECTIONS, the per-address ones off: every client connection comes from 127.0.0.1).
 *
 * Load generator: `--clients` forked children (this file with --client-child), each a lean client:
 * raw node:http2 sessions (h2c) speaking gRPC framing, no RPC framework. Stream i is user
 * "idle-<i>" (its own JWT, device "idle") on connection i mod `--connections`; streams open at most
 * `--open-concurrency` at a time, each counted as attached when its first response (Subscribe's
 * first response is a keep_alive event: the stream is attached on the chat server) arrives.
 * Every response is decoded (SubscribeResponse) and its keep_alive events counted.
 *
 * Phases: mesh ready -> warm-up (`--warmup` streams opened, attached and closed) -> GC -> baseline
 * RSS and a `--window` s idle CPU window with 0 streams -> `--streams` streams opened -> 5 s settle
 * -> GC -> RSS with N streams -> `--window` s idle CPU window (keep-alives flowing every
 * `--keepalive-ms`, SWITCHBOARD_CHAT_KEEPALIVE_MS) -> RSS again without a forced GC -> streams closed.
 * Per subscriber = (RSS with N - baseline RSS) / N, both after a forced GC.
 *
 * Correctness (CHECK FAILED, exit 1 after the table): every stream attached; none ended while idle
 * (an end the client did not ask for); the chat server's chat_live_streams gauge == N; every stream
 * got at least floor(window / keep-alive interval) keep_alive events in the window.
 *
 * No external load generator (exit 2 rule): the client is node:http2, part of Node itself.
 * File descriptors: each client child holds its connections; `ulimit -n` (20000 here) must exceed
 * connections per child plus a few; the gateway holds every connection plus one per 200 upstream
 * streams. The script refuses a split that does not fit (usage error, exit 2).
 */
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { fileURLToPath } from "node:url";
import {
  authHeaders,
  rawSubscribe,
  subscribeBody,
  cpuMeter,
  numberFlag,
  parseArgs,
  runHeader,
  runMain,
  scrapeCounter,
  sleep,
  startSplitChatMesh,
  usage,
  type CpuSplit,
} from "./chat-kit.js";


// ---------------------------------------------------------------------------------------------
// Client child: raw HTTP/2 + gRPC framing.

interface OpenInput {
  readonly cmd: "open";
  readonly baseUrl: string;
  readonly jwtSecret: string;
  /** Global index of this child's first stream (user ids are distinct across children and phases). */
  readonly firstUser: number;
  readonly streams: number;
  readonly connections: number;
  readonly concurrency: number;
}

interface OpenResult {
  readonly attached: number;
  readonly failed: number;
  readonly secs: number;
  readonly errors: readonly string[];
}

interface Stats {
  readonly keepAlives: number;
  /** Streams with fewer than `min` keep-alives since the last reset. */
  readonly below: number;
  readonly ended: number;
  readonly errors: readonly string[];
}

type ChildCommand = OpenInput | { readonly cmd: "stats"; readonly min: number } | { readonly cmd: "reset" } | { readonly cmd: "close" } | { readonly cmd: "exit" };

function clientChild(): void {
  const sessions: http2.ClientHttp2Session[] = [];
  let keepAlive: Uint32Array = new Uint32Array(0);
  let endedIdle = 0;
  let closing = false;
  const errors: string[] = [];
  const note = (e: string) => {
    if (errors.length < 5) errors.push(e);
  };
  const reply = (m: unknown) => process.send!(m);

  async function open(input: OpenInput): Promise<OpenResult> {
    const t0 = performance.now();
    // Each connection opens right before its first stream: the gateway closes a connection that
    // sends no request headers within SWITCHBOARD_GATEWAY_FIRST_BYTES_TIMEOUT_MS (10 s).
    const first = sessions.length;
    const sessionFor = (c: number): http2.ClientHttp2Session => {
      let s = sessions[first + c];
      if (!s) {
        s = http2.connect(input.baseUrl, { settings: { enablePush: false } });
        s.on("error", (e) => note(`session: ${e.message}`));
        s.setMaxListeners(0);
        sessions[first + c] = s;
      }
      return s;
    };
    keepAlive = new Uint32Array(input.streams);
    const body = subscribeBody("idle");
    let attached = 0;
    let failed = 0;
    let next = 0;
    let inFlight = 0;
    await new Promise<void>((done) => {
      const launch = () => {
        while (inFlight < input.concurrency && next < input.streams) {
          const i = next++;
          inFlight++;
          let settled = false;
          const settle = (ok: boolean, why?: string) => {
            if (settled) return;
            settled = true;
            inFlight--;
            if (ok) attached++;
            else {
              failed++;
              if (why) note(why);
            }
            if (attached + failed === input.streams) done();
            else launch();
          };
          rawSubscribe(sessionFor(i % input.connections), authHeaders(input.jwtSecret, `idle-${input.firstUser + i}`), body, {
            onResponse: (res) => {
              let n = 0;
              for (const ev of res.events) if (ev.event.case === "keepAlive") n++;
              if (n === 0) return;
              keepAlive[i]! += n;
              settle(true);
            },
            onEnd: (why) => {
              if (!settled) settle(false, why);
              else if (!closing) {
                endedIdle++;
                note(`ended while idle: ${why}`);
              }
            },
          });
        }
      };
      if (input.streams === 0) done();
      else launch();
    });
    return { attached, failed, secs: (performance.now() - t0) / 1000, errors: [...errors] };
  }

  process.on("message", (m: ChildCommand) => {
    if (m.cmd === "open") {
      open(m).then(reply, (e: unknown) => reply({ error: String(e) }));
    } else if (m.cmd === "reset") {
      keepAlive.fill(0);
      reply({ ok: true });
    } else if (m.cmd === "stats") {
      let total = 0;
      let below = 0;
      for (const n of keepAlive) {
        total += n;
        if (n < m.min) below++;
      }
      reply({ keepAlives: total, below, ended: endedIdle, errors: [...errors] } satisfies Stats);
    } else if (m.cmd === "close") {
      closing = true;
      for (const s of sessions) s?.destroy();
      sessions.length = 0;
      reply({ ok: true });
    } else if (m.cmd === "exit") process.exit(0);
  });
}

// ---------------------------------------------------------------------------------------------
// Parent: the mesh, the phases, the figures.

class Client {
  private readonly child;
  private waiting: ((m: unknown) => void)[] = [];
  constructor() {
    this.child = fork(fileURLToPath(import.meta.url), ["--client-child"], { execArgv: process.execArgv });
    this.child.on("message", (m) => this.waiting.shift()?.(m));
    // A client that dies must not leave the run (and the mesh, and the benchmark lock) hanging.
    this.child.on("exit", (code) => {
      for (const w of this.waiting.splice(0)) w({ error: `client process exited (${code})` });
    });
  }
  get pid(): number {
    return this.child.pid!;
  }
  ask<T>(cmd: ChildCommand): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push((m) => ((m as { error?: string }).error ? reject(new Error((m as { error: string }).error)) : resolve(m as T)));
      this.child.send(cmd);
    });
  }
  exit(): void {
    this.child.send({ cmd: "exit" });
  }
}

const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);
const mb = (kb: number) => (kb / 1024).toFixed(1);

/** Full GC in each process (gc-on-signal.mjs), then RSS once it settled: the lowest of 3 reads 1 s apart. */
async function rssAfterGc(pids: readonly number[]): Promise<number[]> {
  for (const pid of pids) process.kill(pid, "SIGUSR2");
  await sleep(3000);
  for (const pid of pids) process.kill(pid, "SIGUSR2");
  await sleep(2000);
  const reads: number[][] = [];
  for (let r = 0; r < 3; r++) {
    reads.push(pids.map(rssKb));
    await sleep(1000);
  }
  return pids.map((_, i) => Math.min(...reads.map((x) => x[i]!)));
}

function loadAvg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

async function main(): Promise<boolean> {
  const args = parseArgs();
  const streams = numberFlag(args, "streams", 50_000, 1);
  const connections = numberFlag(args, "connections", 1_000, 1);
  const clients = numberFlag(args, "clients", 1, 1);
  const keepAliveMs = numberFlag(args, "keepalive-ms", 25_000, 100);
  const windowSecs = numberFlag(args, "window", 60, 1);
  const warmup = numberFlag(args, "warmup", 2_000, 0);
  const concurrency = numberFlag(args, "open-concurrency", 200, 1);
  // Profiling aid: `--heap-snapshot <dir>` writes heap snapshots of the gateway and the chat server with the N streams open.
  const snapshot = args.get("heap-snapshot");
  if (connections > streams) usage("--connections must be <= --streams");
  if (connections % clients !== 0 || streams % clients !== 0) usage("--clients must divide --streams and --connections");
  const fdLimit = Number(readFileSync("/proc/self/limits", "utf8").match(/Max open files\s+(\d+)/)?.[1] ?? 1024);
  if (connections / clients + 100 > fdLimit) usage(`${connections / clients} connections per client child do not fit ulimit -n ${fdLimit}: raise it or use more --clients`);
  if (connections + streams / 200 + 200 > fdLimit) usage(`the gateway would need ~${connections + streams / 200} descriptors, over ulimit -n ${fdLimit}`);

  console.log(runHeader());
  console.log(`streams ${streams} over ${connections} HTTP/2 connections (${clients} client process(es)); keep-alive ${keepAliveMs} ms; window ${windowSecs} s; load ${loadAvg()}`);

  Object.assign(process.env, {
    SWITCHBOARD_CHAT_KEEPALIVE_MS: String(keepAliveMs),
    SWITCHBOARD_GATEWAY_MAX_STREAMS: String(streams + warmup + 1000),
    SWITCHBOARD_GATEWAY_MAX_CONNECTIONS: String(connections + 1000),
    SWITCHBOARD_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: "0",
    SWITCHBOARD_GATEWAY_MAX_STREAMS_PER_ADDRESS: "0",
  });
  const preload = fileURLToPath(new URL("./gc-on-signal.mjs", import.meta.url));
  const mesh = await startSplitChatMesh("idle", 1, 1, {
    nodeOptions: `--max-old-space-size=12288 --expose-gc --import ${preload}${snapshot ? ` --heapsnapshot-signal=SIGPWR --diagnostic-dir=${snapshot}` : ""}`,
  });
  const pidOf = (name: string) => mesh.processes.find(([n]) => n === name)![1];
  const gatewayPid = pidOf("gateway 1");
  const chatPid = pidOf("chat 1");
  const baseUrl = mesh.baseUrls[0]!;
  const chatMetrics = mesh.chatMetricsUrls[0]!;
  const failures: string[] = [];
  const kids = Array.from({ length: clients }, () => new Client());
  try {
    const openAll = async (n: number, conns: number, firstUser: number) => {
      const rs = await Promise.all(
        kids.map((k, c) =>
          k.ask<OpenResult>({ cmd: "open", baseUrl, jwtSecret: mesh.jwtSecret, firstUser: firstUser + c * (n / clients), streams: n / clients, connections: conns / clients, concurrency: Math.ceil(concurrency / clients) }),
        ),
      );
      return {
        attached: rs.reduce((a, r) => a + r.attached, 0),
        failed: rs.reduce((a, r) => a + r.failed, 0),
        secs: Math.max(...rs.map((r) => r.secs)),
        errors: rs.flatMap((r) => r.errors).slice(0, 5),
      };
    };
    const closeAll = () => Promise.all(kids.map((k) => k.ask({ cmd: "close" })));

    if (warmup > 0) {
      const wConns = Math.max(1, Math.floor(Math.min(connections, 100) / clients)) * clients;
      const wStreams = Math.max(wConns, warmup - (warmup % clients));
      const w = await openAll(wStreams, wConns, 10_000_000);
      console.log(`warm-up: ${w.attached} attached, ${w.failed} failed in ${w.secs.toFixed(1)} s${w.errors.length ? `; ${w.errors.join("; ")}` : ""}`);
      await closeAll();
      await sleep(3000);
    }
    const pids = [gatewayPid, chatPid];
    const procList = [["gateway", gatewayPid], ["chat server", chatPid], ...kids.map((k, i) => [`client ${i + 1}`, k.pid] as const)] as const;
    const [gw0, chat0] = await rssAfterGc(pids);
    console.log(`baseline (0 streams, after warm-up and GC): gateway ${mb(gw0!)} MB, chat server ${mb(chat0!)} MB RSS`);
    const idle0 = cpuMeter(procList);
    await sleep(windowSecs * 1000);
    const cpu0 = idle0.stop();

    const o = await openAll(streams, connections, 0);
    console.log(`opened: ${o.attached} attached, ${o.failed} failed in ${o.secs.toFixed(1)} s (${Math.round(o.attached / o.secs)}/s)${o.errors.length ? `; ${o.errors.join("; ")}` : ""}`);
    console.log(`chat server chat_live_streams right after: ${await scrapeCounter(chatMetrics, "chat_live_streams")}`);
    if (o.attached !== streams) failures.push(`attached ${o.attached} of ${streams} streams (${o.failed} failed: ${o.errors.join("; ")})`);
    await sleep(5000);
    const live = await scrapeCounter(chatMetrics, "chat_live_streams");
    if (live !== streams) failures.push(`chat server chat_live_streams ${live}, expected ${streams}`);
    const [gw1, chat1] = await rssAfterGc(pids);
    if (snapshot) {
      for (const pid of pids) process.kill(pid, "SIGPWR");
      console.log("heap snapshots requested (SIGPWR); waiting 60 s for them to be written");
      await sleep(60_000);
    }
    await Promise.all(kids.map((k) => k.ask({ cmd: "reset" })));
    const idle1 = cpuMeter(procList);
    await sleep(windowSecs * 1000);
    const cpu1 = idle1.stop();
    const minKeepAlives = Math.floor((windowSecs * 1000) / keepAliveMs);
    const stats = await Promise.all(kids.map((k) => k.ask<Stats>({ cmd: "stats", min: minKeepAlives })));
    const gw2 = rssKb(gatewayPid);
    const chat2 = rssKb(chatPid);
    const keepAlives = stats.reduce((a, s) => a + s.keepAlives, 0);
    const ended = stats.reduce((a, s) => a + s.ended, 0);
    const below = stats.reduce((a, s) => a + s.below, 0);
    if (ended > 0) failures.push(`${ended} streams ended while idle: ${stats.flatMap((s) => s.errors).slice(0, 5).join("; ")}`);
    if (below > 0) failures.push(`${below} streams got fewer than ${minKeepAlives} keep_alive events in the ${windowSecs} s window`);
    const loadDuring = loadAvg();
    await closeAll();
    await sleep(5000);
    const [gw3, chat3] = await rssAfterGc(pids);

    const perSub = (a: number, b: number) => (((b - a) * 1024) / streams / 1024).toFixed(2);
    console.log("");
    console.log(`| process | RSS 0 streams MB | RSS ${streams} streams MB (after GC) | per subscriber KB | RSS at end of window MB (no forced GC) | per subscriber KB (no GC) | RSS after close MB |`);
    console.log("|---|---:|---:|---:|---:|---:|---:|");
    console.log(`| gateway | ${mb(gw0!)} | ${mb(gw1!)} | **${perSub(gw0!, gw1!)}** | ${mb(gw2)} | ${perSub(gw0!, gw2)} | ${mb(gw3!)} |`);
    console.log(`| chat server | ${mb(chat0!)} | ${mb(chat1!)} | **${perSub(chat0!, chat1!)}** | ${mb(chat2)} | ${perSub(chat0!, chat2)} | ${mb(chat3!)} |`);
    console.log("");
    const kaPerSec = keepAlives / cpu1.secs;
    const row = (split: CpuSplit, name: string) => split.parts.find(([n]) => n === name)?.[1] ?? NaN;
    console.log(`keep-alives in the window: ${keepAlives} (${kaPerSec.toFixed(0)}/s; interval ${keepAliveMs} ms, ${streams} streams)`);
    console.log(`| process | CPU % of a core, 0 streams | CPU %, ${streams} idle streams | difference | per keep-alive µs |`);
    console.log("|---|---:|---:|---:|---:|");
    for (const [name] of procList) {
      const a = row(cpu0, name);
      const b = row(cpu1, name);
      console.log(`| ${name} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${(b - a).toFixed(2)} | ${kaPerSec > 0 ? (((b - a) / 100 / kaPerSec) * 1e6).toFixed(1) : "-"} |`);
    }
    console.log(`| machine (of ${cpu1.cores * 100}) | ${cpu0.machine.toFixed(1)} | ${cpu1.machine.toFixed(1)} | ${(cpu1.machine - cpu0.machine).toFixed(1)} | |`);
    console.log(`load average during the run: ${loadDuring}`);
    for (const f of failures) console.log(`CHECK FAILED: ${f}`);
    if (failures.length > 0) {
      for (const name of ["gateway 1", "chat 1"]) console.log(`--- ${name} output (last 4000 characters):\n${mesh.output(name).slice(-4000)}`);
    }
    return failures.length === 0;
  } finally {
    for (const k of kids) k.exit();
    await mesh.close();
  }
}

if (process.argv.includes("--client-child")) clientChild();
else runMain(main);
