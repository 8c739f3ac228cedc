/**
 * Benchmark (not a test): presence at scale, issue 13's acceptance: "10,000 online users with 50
 * contacts each, heartbeats at 1,000/s plus 1% churn a minute: CPU and Redis operations per
 * second, transition delivery p99 after the debounce (target < 1 s), and how cost grows from
 * 1,000 to 10,000 users (target: linear in transitions, flat in idle online users)".
 *
 *   npx tsx bench/presence.ts [--sizes 1000,10000] [--group 51] [--churn 1] [--idle 30] [--window 60]
 *                             [--extra-churn 0] [--ramp-rate 150] [--connections 4] [--verbose]
 *   SWITCHBOARD_PRESENCE_HEARTBEAT_INTERVAL_MS=... (and _TIMEOUT_MS, _GRACE_MS, _MIN_DWELL_MS) to shorten
 *
 * Topology (cluster engine, every part its own process): Cassandra, ZooKeeper, NATS and Redis
 * (testkit startInfra, or the SWITCHBOARD_* servers of the environment), and one `switchboard
 * presence` process whose CPU is measured alone (/proc/<pid>/stat). This process is the load
 * generator and the watchers (one clock for sends and arrivals).
 *
 * Contacts: users are numbered; every `--group` (51) consecutive users form one group channel,
 * written straight into chat's ChatStore (Cassandra) before presence starts: each user has 50
 * contacts. Groups are made for the largest size up front.
 *
 * Heartbeats: unary PresenceService/Heartbeat straight to the presence gRPC server, with the
 * identity assertion the gateway signs for a caller (testkit/mesh-identity.ts). That is the call
 * presence receives when a client heartbeats through the gateway (the gateway's own hop is
 * measured by bench/internal-hop.ts and bench/redirect.ts, and would only put gateway CPU on the
 * same 2 cores); and one Heartbeat per device per interval is the dearest way to be online
 * (chat servers batch up to 10,000 devices into one ReportDevices). Each user beats once per
 * interval at a fixed phase (open loop: a send is never held back by a slow answer), so N users
 * send N / interval heartbeats a second (1,000/s for 10,000 users at the default 10 s).
 *
 * Watchers: in every group, member 0 holds a WatchPresence stream on members 1..50 (its contacts)
 * and member 1 one on member 0, opened before anyone is online (their first answers, "unknown",
 * are skipped). Every transition of every user therefore reaches exactly one watcher.
 *
 * Per size (1,000 then 10,000, in one run, on one presence process):
 * 1. ramp: the new users start heartbeating, `--ramp-rate` (150) users a second; every ONLINE must
 *    arrive. Not all at once: 10,000 users logging in within one interval is 1,000 transitions a
 *    second (each a contacts read from Cassandra and a fan-out), a login storm this 2-core box
 *    does not absorb (bench/README.md: the presence section), and not the steady state measured here.
 * 2. idle: `--idle` s of heartbeats only: presence CPU, Redis commands, per idle online user.
 * 3. churn: users stop heartbeating at `--churn` % of the size per minute (never members 0 and 1,
 *    each user at most once); each comes back `timeout + dwell + 2 s` after it stopped (so it is
 *    offline, and the dwell after its offline transition has passed, when it returns). After a
 *    warm-up (until returns run at the drop rate) `--window` s are measured; then drops stop and
 *    the last ones are waited for.
 *    With `--extra-churn P`, the largest size runs a second churn phase at P %/min: with 1 %/min
 *    the transitions' CPU is within the noise of the heartbeats'; P makes it measurable.
 *
 * Delivery latency is measured from the moment the debounce lets the transition out:
 * - online: the returning heartbeat (its send time here; "server" column: the heartbeat's time as
 *   the server recorded it, i.e. the event's last_seen);
 * - offline: the last heartbeat + the timeout (send time here; "server": last_seen + timeout),
 * so it is how late past the configured window the watcher saw it (sweep tick up to 500 ms
 * included).
 *
 * Correctness (exit 1): every heartbeat answered OK; every expected transition (ramp ONLINE,
 * churn OFFLINE and ONLINE) observed by its watcher exactly once; nothing else observed or
 * published on the bus for any user (no false offline for users that kept heartbeating).
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { fromBinary } from "@bufbuild/protobuf";
import os from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setMaxListeners } from "node:events";
import { ChatEventSchema, MemberChangeKind, MemberChangeSchema } from "../gen/switchboard/chat/v1/chat_pb.js";
import { PresenceChangedSchema } from "../gen/switchboard/events/v1/events_pb.js";
import { PresenceService, PresenceState } from "../gen/switchboard/presence/v1/presence_pb.js";
import { loadConfig, type PresenceConfig } from "../platform/config.js";
import { openEngine, type Engine } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import { createGrpcClient, type GrpcClient } from "../platform/grpc/client.js";
import { createChatStore } from "../services/chat/store.js";
import type { ChangeRecord, ChannelRecord, MemberRecord } from "../services/chat/ports.js";
import { PRESENCE_CHANGED_SUBJECT } from "../services/presence/fanout.js";
import { SNOWFLAKE_EPOCH_MS } from "../services/tokenrange/snowflake.js";
import { assertionHeaders, TEST_MESH_SECRET } from "../testkit/mesh-identity.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../testkit/processes.js";
import { infraEnv, startInfra, type Infra } from "../testkit/servers/index.js";
import { Checks } from "./bench-guard.js";
import { cpuMeter, fmt, numberFlag, parseArgs, runHeader, sleep, summarize, usage, type CpuSplit } from "./chat-kit.js";

const args = parseArgs();
const sizes = (args.get("sizes") ?? "1000,10000").split(",").map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 10) usage(`--sizes: integers >= 10, comma-separated (got "${s}")`);
  return n;
});
const GROUP = numberFlag(args, "group", 51, 3);
const CHURN_PCT = numberFlag(args, "churn", 1, 0);
const EXTRA_CHURN_PCT = numberFlag(args, "extra-churn", 0, 0);
const IDLE_S = numberFlag(args, "idle", 30, 1);
const WINDOW_S = numberFlag(args, "window", 60, 1);
const CONNECTIONS = numberFlag(args, "connections", 4, 1);
const VERBOSE = args.has("verbose");
const RAMP_RATE = numberFlag(args, "ramp-rate", 150, 1);
const MAX_N = Math.max(...sizes);
const DEVICE = "bench";

// ---------------------------------------------------------------------------------------------
// Users, groups, expectations.

const tag = Date.now().toString(36);
const userId = (i: number) => `pb${tag}-${i}`;
const userIndex = new Map<string, number>();
for (let i = 0; i < MAX_N; i++) userIndex.set(userId(i), i);
const memberOf = (i: number) => i % GROUP;
const groupOf = (i: number) => Math.floor(i / GROUP);
const groups = Math.ceil(MAX_N / GROUP);

type St = "on" | "off";
interface Expected {
  readonly state: St;
  readonly phase: string;
  /** Client clock: when the debounce allows it (ms, Date.now()). Set when known. */
  at: number;
  seen: number;
  latency?: number;
  serverLatency?: number;
}
const expected: Expected[][] = Array.from({ length: MAX_N }, () => []);
const unexpected: string[] = [];
let unexpectedCount = 0;

// ---------------------------------------------------------------------------------------------

async function main(): Promise<boolean> {
  const header = runHeader();
  console.log(header);
  const checks = new Checks();
  const env: Record<string, string> = {
    ...(Object.fromEntries(Object.entries(process.env).filter(([k, v]) => k.startsWith("SWITCHBOARD_") && v !== undefined)) as Record<string, string>),
  };
  const processes: [string, number][] = [];
  let infra: Infra | undefined;
  if (!env.SWITCHBOARD_CASSANDRA_CONTACT_POINTS) {
    console.log("starting Cassandra, ZooKeeper, NATS and Redis for this run (testkit startInfra) ...");
    infra = await startInfra({ log: (l) => console.log(l) });
    Object.assign(env, infraEnv(infra.info));
    processes.push(["redis", infra.redis.pid], ["cassandra", infra.cassandra.pid], ["nats", infra.nats.pid], ["zookeeper", infra.zookeeper.pid]);
  }
  Object.assign(env, {
    SWITCHBOARD_ENGINE: "cluster",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
    SWITCHBOARD_LOG_LEVEL: "warn",
    SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
  });
  env.SWITCHBOARD_CASSANDRA_KEYSPACE ??= `bench_presence_${tag}`;
  env.SWITCHBOARD_JWT_HS256_SECRET ??= "bench-presence-secret-0123456789abcdef0123456789";
  env.SWITCHBOARD_CODE_KEY ??= "bench-presence-code-key-0123456789abcdef";
  const config = loadConfig(env);
  const P = config.presence;
  const engine = await openEngine(config, silentLog);
  let presenceProc: MeshProcess | undefined;
  const stopAll = async () => {
    await presenceProc?.stop();
    await engine.close();
    await infra?.stop();
  };
  try {
    await waitFor("the bench's engine (cassandra, nats, redis)", async () => {
      const r = await engine.readiness();
      return r.checks.filter((c) => c.name !== "zookeeper").every((c) => c.ok) ? true : undefined;
    }, 120_000);

    // Contacts: groups of GROUP consecutive users, in chat's store (migrations run here first).
    const t0 = performance.now();
    const chatStore = await createChatStore(engine, silentLog);
    let nextSeq = 0;
    const idAt = (ms: number) => (BigInt(ms - SNOWFLAKE_EPOCH_MS) << 22n) | BigInt(++nextSeq % 4096);
    for (let g = 0; g < groups; g += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, groups - g) }, (_, k) => {
          const gi = g + k;
          const ids = Array.from({ length: Math.min(GROUP, MAX_N - gi * GROUP) }, (_, m) => userId(gi * GROUP + m));
          const at = new Date();
          const eventId = idAt(at.getTime());
          const id = `ch_pb${tag}_${gi}`;
          const record: ChannelRecord = { id, type: "group", name: `bench presence ${gi}`, createdAt: at, createdBy: ids[0]!, version: 1 };
          const members: MemberRecord[] = ids.map((u, m) => ({ userId: u, role: m === 0 ? "owner" : "member", joinedAt: at, joinedId: eventId }));
          const event: ChangeRecord = {
            id: eventId,
            channelId: id,
            kind: "member",
            createdAt: at,
            event: create(ChatEventSchema, {
              eventId,
              time: timestampFromMs(at.getTime()),
              event: { case: "memberChange", value: create(MemberChangeSchema, { channelId: id, kind: MemberChangeKind.CREATED, userIds: ids, actorId: ids[0]! }) },
            }),
          };
          return chatStore.createChannel(record, members, event);
        }),
      );
    }
    console.log(`${groups} groups of up to ${GROUP} members (${MAX_N} users, ${GROUP - 1} contacts each) written to chat's store in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // The presence process.
    const grpcPort = await freePort();
    const metricsPort = await freePort();
    // BENCH_PRESENCE_CPU_PROF=<dir>: a V8 CPU profile of the presence process, written when it exits.
    const profDir = process.env.BENCH_PRESENCE_CPU_PROF;
    const prof: Record<string, string> = profDir
      ? { NODE_OPTIONS: `--import ${new URL("./cpu-prof-preload.mjs", import.meta.url).pathname}`, BENCH_CPU_PROF_DIR: profDir }
      : {};
    presenceProc = spawnSwitchboard(["presence"], { ...env, ...prof, SWITCHBOARD_GRPC_PORT: String(grpcPort), SWITCHBOARD_METRICS_PORT: String(metricsPort) });
    processes.unshift(["presence", presenceProc.child.pid!]);
    const address = `127.0.0.1:${grpcPort}`;
    const clients: GrpcClient<typeof PresenceService>[] = Array.from({ length: CONNECTIONS }, (_, k) =>
      createGrpcClient(PresenceService, address, { defaultTimeoutMs: 10_000, channelOptions: { "grpc.use_local_subchannel_pool": 1, "grpc.bench_conn": k } as object }),
    );
    await waitFor("the presence process to answer GetPresence", async () => {
      if (presenceProc!.child.exitCode !== null) throw new Error(`presence exited:\n${presenceProc!.output().slice(-3000)}`);
      await clients[0]!.getPresence({ userIds: [userId(0)] }, { headers: assertionHeaders(userId(0), PresenceService.method.getPresence), timeoutMs: 2_000 });
      return true;
    }, 120_000);
    console.log(
      `presence on ${address} (pid ${presenceProc.child.pid}); interval ${P.heartbeatIntervalMs} ms, timeout ${P.timeoutMs} ms, grace ${P.graceMs} ms, ` +
        `min dwell ${P.minDwellMs} ms, contacts TTL ${P.contactsTtlMs} ms`,
    );

    const run = new Run(engine, clients, P, processes);
    const ok = await run.all();
    printResults(run, checks, P);
    const out = presenceProc.output().trim();
    if (out) console.log(`\npresence process output (last 3000 characters):\n${out.slice(-3000)}`);
    checks.check(ok, "the run finished (every phase's transitions arrived in time)");
    await run.close();
    return !checks.failed;
  } finally {
    await stopAll();
  }
}

// ---------------------------------------------------------------------------------------------

interface PhaseFigures {
  readonly name: string;
  readonly size: number;
  readonly secs: number;
  readonly cpu: CpuSplit;
  readonly heartbeats: number;
  readonly decided: number;
  readonly redisCalls: number;
  readonly redisScripts: number;
  readonly redisTop: string;
  readonly loopP99: number;
}

class Run {
  private readonly state = new Uint8Array(MAX_N); // 0 not started, 1 beating, 2 away
  private readonly churned = new Uint8Array(MAX_N);
  private readonly firstPending = new Uint8Array(MAX_N); // 1: the next beat brings the user online
  private readonly lastAckedSend = new Float64Array(MAX_N);
  /** Pending online expectation per user (ramp or return), set at the beat's send. */
  private readonly slotOf: Uint16Array;
  private readonly wheel: number[][];
  private readonly tickMs = 10;
  private heartbeats = 0;
  hbFailed = 0;
  readonly hbErrors: string[] = [];
  decided = 0;
  readonly decidedByUser = new Map<number, string[]>();
  private stopBeats = false;
  private beatLoop: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private readonly streams: Promise<void>[] = [];
  readonly streamErrors: string[] = [];
  readonly figures: PhaseFigures[] = [];
  private unsub: () => void = () => {};
  private phaseName = "setup";
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });
  private size = 0;
  private inFlight = 0;
  private lastHb = 0;
  private lastFailed = 0;
  private lastDecided = 0;

  constructor(
    private readonly engine: Engine,
    private readonly clients: readonly GrpcClient<typeof PresenceService>[],
    private readonly P: PresenceConfig,
    private readonly processes: readonly (readonly [string, number])[],
  ) {
    const slots = Math.round(P.heartbeatIntervalMs / this.tickMs);
    this.wheel = Array.from({ length: slots }, () => []);
    this.slotOf = new Uint16Array(MAX_N);
    for (let i = 0; i < MAX_N; i++) {
      const s = Math.floor(((i * 0.6180339887498949) % 1) * slots);
      this.slotOf[i] = s;
      this.wheel[s]!.push(i);
    }
    setMaxListeners(0, this.abort.signal);
    this.loop.enable();
  }

  async all(): Promise<boolean> {
    this.unsub = this.engine.bus.subscribe(PRESENCE_CHANGED_SUBJECT, (msg) => {
      const ev = fromBinary(PresenceChangedSchema, msg.data);
      const i = userIndex.get(ev.userId);
      if (i === undefined) return;
      this.decided++;
      let l = this.decidedByUser.get(i);
      if (!l) this.decidedByUser.set(i, (l = []));
      l.push(ev.state === PresenceState.ONLINE ? "on" : "off");
    });
    await this.openWatchers();
    this.beatLoop = this.beats();
    const progress = setInterval(() => {
      const line = `  [${new Date().toISOString().slice(11, 19)}] ${this.phaseName}: heartbeats sent ${this.heartbeats - this.lastHb}, failed ${this.hbFailed - this.lastFailed}, in flight ${this.inFlight}; decided ${this.decided - this.lastDecided}; loop max ${(this.loop.max / 1e6).toFixed(0)} ms`;
      this.lastHb = this.heartbeats;
      this.lastFailed = this.hbFailed;
      this.lastDecided = this.decided;
      if (VERBOSE) console.log(line);
    }, 5_000);
    progress.unref();
    this.phaseName = "baseline 0";
    console.log(`[${new Date().toISOString()}] baseline: 10 s with nobody online (the process's fixed cost: sweeper ticks, clients, timers)`);
    await this.measure(this.phaseName, 0, 10_000);
    let prev = 0;
    let ok = true;
    for (const n of sizes) {
      ok = (await this.ramp(prev, n)) && ok;
      prev = n;
      await this.idle(n);
      ok = (await this.churn(n, CHURN_PCT, `churn ${n}`)) && ok;
      if (EXTRA_CHURN_PCT > 0 && n === MAX_N) ok = (await this.churn(n, EXTRA_CHURN_PCT, `churn ${n} @${EXTRA_CHURN_PCT}%`)) && ok;
    }
    // Let stragglers (duplicates, false transitions) show before judging.
    await sleep(2_000);
    return ok;
  }

  async close(): Promise<void> {
    this.stopBeats = true;
    await this.beatLoop;
    this.abort.abort();
    await Promise.all(this.streams);
    this.unsub();
    for (const c of this.clients) c.close();
  }

  // --- watchers -------------------------------------------------------------------------------

  private async openWatchers(): Promise<void> {
    let ready = 0;
    let expectedStreams = 0;
    for (let g = 0; g < groups; g++) {
      const first = g * GROUP;
      const last = Math.min(MAX_N, first + GROUP) - 1;
      if (last - first < 1) continue;
      const contacts = Array.from({ length: last - first }, (_, k) => userId(first + 1 + k));
      expectedStreams += 2;
      this.watch(first, contacts, () => ready++, g * 2);
      this.watch(first + 1, [userId(first)], () => ready++, g * 2 + 1);
    }
    await waitFor(`${expectedStreams} WatchPresence streams to answer their first state`, async () => {
      if (this.streamErrors.length) throw new Error(this.streamErrors[0]);
      return ready === expectedStreams ? true : undefined;
    }, 120_000);
    console.log(`${expectedStreams} WatchPresence streams open (member 0 of each group on members 1..${GROUP - 1}, member 1 on member 0)`);
  }

  private watch(watcher: number, userIds: string[], onReady: () => void, k: number): void {
    const client = this.clients[k % this.clients.length]!;
    this.streams.push(
      (async () => {
        let snapshot = userIds.length;
        try {
          const headers = assertionHeaders(userId(watcher), PresenceService.method.watchPresence);
          for await (const m of client.watchPresence({ userIds }, { headers, signal: this.abort.signal, timeoutMs: 3_600_000 })) {
            const now = Date.now();
            const p = m.presence!;
            if (snapshot > 0) {
              if (p.state !== PresenceState.UNSPECIFIED) this.unexpected(`watcher ${watcher}: first answer for ${p.userId} is ${PresenceState[p.state]}, expected unknown`);
              if (--snapshot === 0) onReady();
              continue;
            }
            this.arrived(p.userId, p.state === PresenceState.ONLINE ? "on" : "off", now, p.lastSeenTime ? timestampDate(p.lastSeenTime).getTime() : NaN);
          }
          if (!this.abort.signal.aborted) this.streamErrors.push(`watcher ${watcher}: stream ended by the server`);
        } catch (e) {
          if (!this.abort.signal.aborted) this.streamErrors.push(`watcher ${watcher}: ${String(e)}`);
        }
      })(),
    );
  }

  private unexpected(what: string): void {
    unexpectedCount++;
    if (unexpected.length < 10) unexpected.push(what);
  }

  private arrived(uid: string, state: St, now: number, lastSeen: number): void {
    const i = userIndex.get(uid);
    if (i === undefined) return this.unexpected(`transition of unknown user ${uid}`);
    const e = expected[i]!.find((x) => x.seen === 0);
    if (!e || e.state !== state) {
      return this.unexpected(`${uid} ${state} at ${this.phaseName}: not expected (${expected[i]!.map((x) => `${x.state}${x.seen ? "*" : ""}`).join(",")})`);
    }
    e.seen++;
    if (state === "off") {
      // The debounce allows it at the last heartbeat + the timeout.
      e.at = this.lastAckedSend[i]! + this.P.timeoutMs;
      e.serverLatency = now - (lastSeen + this.P.timeoutMs);
    } else {
      e.serverLatency = now - lastSeen;
    }
    e.latency = now - e.at;
  }

  // --- heartbeats -----------------------------------------------------------------------------

  private beat(i: number): void {
    const sendAt = Date.now();
    this.heartbeats++;
    if (this.firstPending[i]) {
      this.firstPending[i] = 0;
      expected[i]!.push({ state: "on", phase: this.phaseName, at: sendAt, seen: 0 });
    }
    const uid = userId(i);
    this.inFlight++;
    this.clients[i % this.clients.length]!.heartbeat({ deviceId: DEVICE }, { headers: assertionHeaders(uid, PresenceService.method.heartbeat) }).then(
      () => {
        this.inFlight--;
        if (sendAt > this.lastAckedSend[i]!) this.lastAckedSend[i] = sendAt;
      },
      (e: unknown) => {
        this.inFlight--;
        this.hbFailed++;
        if (this.hbErrors.length < 5) this.hbErrors.push(`${uid}: ${String(e)}`);
      },
    );
  }

  /** Open loop: the users of each 10 ms slot of the interval beat when the slot comes round. */
  private async beats(): Promise<void> {
    const slots = this.wheel.length;
    const t0 = performance.now();
    let done = 0; // slots handled since t0
    while (!this.stopBeats) {
      const due = Math.floor((performance.now() - t0) / this.tickMs);
      for (; done <= due; done++) {
        for (const i of this.wheel[done % slots]!) if (this.state[i] === 1) this.beat(i);
      }
      await sleep(Math.max(1, t0 + done * this.tickMs - performance.now()));
    }
  }

  // --- phases ---------------------------------------------------------------------------------

  private async ramp(from: number, to: number): Promise<boolean> {
    this.phaseName = `ramp ${to}`;
    this.size = to;
    console.log(`\n[${new Date().toISOString()}] ${this.phaseName}: users ${from}..${to - 1} start heartbeating`);
    // New users start heartbeating RAMP_RATE a second (each beats first at its slot, within an interval).
    const start = performance.now();
    for (let i = from; i < to; i++) {
      const wait = start + ((i - from) * 1000) / RAMP_RATE - performance.now();
      if (wait > 0) await sleep(wait);
      this.firstPending[i] = 1;
      this.state[i] = 1;
    }
    const ok = await this.settle(`every ONLINE of ${this.phaseName}`, this.P.heartbeatIntervalMs + 60_000, () => {
      for (let i = from; i < to; i++) if (this.firstPending[i]) return false;
      return true;
    });
    // Past the dwell of the ramp's transitions and the contacts cache of the ramp's lookups.
    await sleep(Math.max(this.P.minDwellMs, this.P.contactsTtlMs) + 1_000);
    return ok;
  }

  private async idle(n: number): Promise<void> {
    this.phaseName = `idle ${n}`;
    console.log(`[${new Date().toISOString()}] ${this.phaseName}: ${IDLE_S} s of heartbeats only`);
    await this.measure(this.phaseName, n, IDLE_S * 1000);
  }

  private async churn(n: number, pct: number, name: string): Promise<boolean> {
    this.phaseName = name;
    const rate = (n * pct) / 100 / 60; // drops per second
    if (rate <= 0) return true;
    const away = this.P.timeoutMs + this.P.minDwellMs + 2_000;
    const warm = away + 3_000;
    console.log(`[${new Date().toISOString()}] ${name}: ${rate.toFixed(2)} drops/s (${pct} %/min of ${n}), each back after ${away} ms; warm-up ${(warm / 1000).toFixed(0)} s, measured ${WINDOW_S} s`);
    const eligible: number[] = [];
    for (let i = 0; i < n; i++) if (memberOf(i) >= 2 && !this.churned[i]) eligible.push(i);
    shuffle(eligible);
    let stop = false;
    const returns: Promise<void>[] = [];
    const dropper = (async () => {
      const start = performance.now();
      for (let k = 0; !stop; k++) {
        const dueAt = start + (k * 1000) / rate;
        const wait = dueAt - performance.now();
        if (wait > 0) await sleep(wait);
        if (stop) break;
        const i = eligible.pop();
        if (i === undefined) {
          console.log(`${name}: out of users to churn`);
          break;
        }
        this.churned[i] = 1;
        this.state[i] = 2;
        expected[i]!.push({ state: "off", phase: this.phaseName, at: NaN, seen: 0 });
        returns.push(
          sleep(away).then(() => {
            this.firstPending[i] = 1;
            this.state[i] = 1;
            this.beat(i); // the returning heartbeat, off its slot
          }),
        );
      }
    })();
    await sleep(warm);
    await this.measure(name, n, WINDOW_S * 1000);
    stop = true;
    await dropper;
    await Promise.all(returns);
    return this.settle(`every transition of ${name}`, 30_000);
  }

  private async settle(what: string, ms: number, sent: () => boolean = () => true): Promise<boolean> {
    const phase = this.phaseName;
    try {
      await waitFor(what, async () => {
        if (!sent()) return undefined;
        for (const list of expected) for (const e of list) if (e.phase === phase && e.seen === 0) return undefined;
        return true;
      }, ms);
      return true;
    } catch (e) {
      console.log(`${phase}: ${String(e)}`);
      return false;
    }
  }

  private async measure(name: string, size: number, ms: number): Promise<void> {
    const redis = this.engine.redis!;
    const r0 = await redisCounters(redis);
    const hb0 = this.heartbeats;
    const d0 = this.decided;
    this.loop.reset();
    const meter = cpuMeter([...this.processes, ["bench (load + watchers)", process.pid]]);
    await sleep(ms);
    const cpu = meter.stop();
    const r1 = await redisCounters(redis);
    const byCmd = [...r1.calls.entries()].map(([c, v]) => [c, v - (r0.calls.get(c) ?? 0)] as const).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
    const total = byCmd.reduce((a, [, v]) => a + v, 0);
    this.figures.push({
      name,
      size,
      secs: cpu.secs,
      cpu,
      heartbeats: this.heartbeats - hb0,
      decided: this.decided - d0,
      redisCalls: total,
      redisScripts: byCmd.filter(([c]) => c === "eval" || c === "evalsha").reduce((a, [, v]) => a + v, 0),
      redisTop: byCmd.slice(0, 8).map(([c, v]) => `${c} ${Math.round(v / cpu.secs)}`).join(", "),
      loopP99: this.loop.percentile(99) / 1e6,
    });
  }
}

async function redisCounters(redis: NonNullable<Engine["redis"]>): Promise<{ processed: number; calls: Map<string, number> }> {
  const stats = await redis.info("stats");
  const processed = Number(/total_commands_processed:(\d+)/.exec(stats)?.[1] ?? NaN);
  const cs = await redis.info("commandstats");
  const calls = new Map<string, number>();
  for (const m of cs.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return { processed, calls };
}

function shuffle<T>(a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}

// ---------------------------------------------------------------------------------------------

function printResults(run: Run, checks: Checks, P: PresenceConfig): void {
  const pres = (f: PhaseFigures) => f.cpu.parts.find(([n]) => n === "presence")![1];
  console.log(`\n${runHeader()}`);
  console.log(`load: ${loadavg()}`);
  console.log(`\nCPU and Redis per phase (CPU: % of one core over the window; Redis: commands/s, "in scripts" counts the commands Lua scripts run)`);
  console.log("\n| phase | users | window s | heartbeats/s | transitions decided/s | presence CPU % | presence CPU ms/s | Redis cmds/s (in scripts too) | of which EVAL/s | redis CPU % | cassandra CPU % | nats CPU % | bench CPU % | bench loop p99 ms |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  const part = (f: PhaseFigures, name: string) => {
    const p = f.cpu.parts.find(([n]) => n === name);
    return p ? p[1].toFixed(1) : "-";
  };
  for (const f of run.figures) {
    console.log(
      `| ${f.name} | ${f.size} | ${f.secs.toFixed(1)} | ${(f.heartbeats / f.secs).toFixed(0)} | ${(f.decided / f.secs).toFixed(2)} | ${pres(f).toFixed(1)} | ${(pres(f) * 10).toFixed(1)} | ` +
        `${(f.redisCalls / f.secs).toFixed(0)} | ${(f.redisScripts / f.secs).toFixed(0)} | ${part(f, "redis")} | ${part(f, "cassandra")} | ${part(f, "nats")} | ${part(f, "bench (load + watchers)")} | ${fmt(f.loopP99)} |`,
    );
  }
  for (const f of run.figures) console.log(`Redis commands/s in ${f.name}: ${f.redisTop}; machine ${Math.round(f.cpu.machine)}% of ${f.cpu.cores * 100}%`);

  // Delivery latency per phase.
  const phases = new Map<string, { lat: number[]; srv: number[]; on: number; off: number; missing: number; dup: number }>();
  for (const list of expected) {
    for (const e of list) {
      let p = phases.get(e.phase);
      if (!p) phases.set(e.phase, (p = { lat: [], srv: [], on: 0, off: 0, missing: 0, dup: 0 }));
      if (e.state === "on") p.on++;
      else p.off++;
      if (e.seen === 0) p.missing++;
      if (e.seen > 1) p.dup += e.seen - 1;
      if (e.latency !== undefined) p.lat.push(e.latency);
      if (e.serverLatency !== undefined) p.srv.push(e.serverLatency);
    }
  }
  console.log(`\nDelivery to the watcher, ms past the moment the debounce allows it (online: the heartbeat; offline: last heartbeat + ${P.timeoutMs} ms timeout)`);
  console.log("\n| phase | expected online | expected offline | observed | missing | p50 ms | p99 ms | max ms | server-clock p50 / p99 ms |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const [name, p] of phases) {
    const s = summarize(p.lat);
    const v = summarize(p.srv);
    console.log(`| ${name} | ${p.on} | ${p.off} | ${p.lat.length} | ${p.missing} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${fmt(s.max)} | ${fmt(v.p50)} / ${fmt(v.p99)} |`);
  }

  // Growth: per idle online user (above the baseline with nobody online) and per transition (above idle).
  const base0 = run.figures.find((f) => f.name.startsWith("baseline"));
  const idle = run.figures.filter((f) => f.name.startsWith("idle "));
  const churn = run.figures.filter((f) => f.name.startsWith("churn "));
  const ms = (f: PhaseFigures) => pres(f) * 10; // CPU ms per second
  const redisPerS = (f: PhaseFigures) => f.redisCalls / f.secs;
  console.log("\nGrowth");
  if (base0) console.log(`- nobody online: presence ${ms(base0).toFixed(1)} ms CPU per second, Redis ${redisPerS(base0).toFixed(0)} commands/s (the fixed cost)`);
  for (const f of idle) {
    const above = ms(f) - (base0 ? ms(base0) : 0);
    console.log(
      `- ${f.name}: presence ${ms(f).toFixed(1)} ms/s, above nobody online ${above.toFixed(1)} ms/s = ${((above / f.size) * 1000).toFixed(1)} µs per second per idle online user ` +
        `(${((above / (f.heartbeats / f.secs)) * 1000).toFixed(0)} µs per heartbeat); Redis ${(redisPerS(f) / f.size).toFixed(2)} commands/s per user (${(f.redisCalls / f.heartbeats).toFixed(1)} per heartbeat, ${(f.redisScripts / f.heartbeats).toFixed(2)} EVAL)`,
    );
  }
  for (let k = 1; k < idle.length; k++) {
    const a = idle[k - 1]!;
    const b = idle[k]!;
    const perUser = (f: PhaseFigures) => (ms(f) - (base0 ? ms(base0) : 0)) / f.size;
    console.log(
      `- per idle online user, ${b.size} vs ${a.size} users (${(b.size / a.size).toFixed(0)}x the users): presence CPU ${(perUser(b) / perUser(a)).toFixed(2)}x, ` +
        `Redis commands ${(redisPerS(b) / b.size / (redisPerS(a) / a.size)).toFixed(2)}x (1.00x = flat); total presence CPU ${(ms(b) / ms(a)).toFixed(2)}x, marginal ${(((ms(b) - ms(a)) / (b.size - a.size)) * 1000).toFixed(1)} µs/s per added user`,
    );
  }
  for (const f of churn) {
    const base = idle.find((x) => x.size === f.size);
    if (!base) continue;
    const tps = f.decided / f.secs;
    const extraMs = ms(f) - ms(base);
    const extraRedis = redisPerS(f) - redisPerS(base);
    console.log(
      `- ${f.name}: ${tps.toFixed(2)} transitions/s; presence CPU above idle ${extraMs.toFixed(1)} ms/s = ${tps > 0 ? (extraMs / tps).toFixed(2) : "-"} ms per transition; ` +
        `Redis above idle ${extraRedis.toFixed(0)} commands/s = ${tps > 0 ? (extraRedis / tps).toFixed(1) : "-"} per transition (noise: +-a few % of the idle figures)`,
    );
  }

  // Checks.
  let missing = 0;
  let dup = 0;
  let total = 0;
  for (const list of expected) for (const e of list) {
    total++;
    if (e.seen === 0) missing++;
    if (e.seen > 1) dup++;
  }
  for (const e of run.hbErrors) console.log(`heartbeat error: ${e}`);
  for (const e of run.streamErrors.slice(0, 5)) console.log(`stream error: ${e}`);
  for (const u of unexpected) console.log(`unexpected: ${u}`);
  let busMismatch = 0;
  const busExamples: string[] = [];
  for (let i = 0; i < MAX_N; i++) {
    const want = expected[i]!.map((e) => e.state).join(",");
    const got = (run.decidedByUser.get(i) ?? []).join(",");
    if (want !== got) {
      busMismatch++;
      if (busExamples.length < 5) busExamples.push(`${userId(i)}: published ${got || "nothing"}, expected ${want || "nothing"}`);
    }
  }
  for (const e of busExamples) console.log(`bus: ${e}`);
  console.log("");
  checks.check(run.hbFailed === 0, `every heartbeat answered OK (failed: ${run.hbFailed})`);
  checks.check(run.streamErrors.length === 0, `no WatchPresence stream ended early (${run.streamErrors.length})`);
  checks.check(missing === 0 && dup === 0, `every expected transition (${total}) observed by its watcher exactly once (missing ${missing}, duplicated ${dup})`);
  checks.check(unexpectedCount === 0, `no transition observed that was not expected (false offline / online): ${unexpectedCount}`);
  checks.check(busMismatch === 0, `the transitions published on the bus are exactly the expected ones, per user (users differing: ${busMismatch})`);
  const worst = [...phases.entries()].filter(([n]) => n.startsWith("churn")).map(([, p]) => summarize(p.lat).p99);
  const p99 = worst.length ? Math.max(...worst) : NaN;
  console.log(`target (churn transitions delivered p99 < 1000 ms past the debounce): ${p99 < 1000 ? "met" : "NOT met"} (${fmt(p99)} ms)`);
}

function loadavg(): string {
  return `load average ${os.loadavg().map((x) => x.toFixed(2)).join(", ")} (uptime), ${os.cpus().length} cores`;
}

main().then(
  (passed) => process.exit(passed ? 0 : 1),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
