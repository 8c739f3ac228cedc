/**
 * Benchmark (not a test): sender-to-recipient live delivery latency through the gateway at a fixed
 * send rate (open loop), issue 9 acceptance (b).
 *
 *   npx tsx bench/chat-delivery.ts [--engine memory|cluster] [--rate 1000] [--duration 30] [--warmup 3]
 *                                  [--channels 50] [--recipients 2] [--connections 4] [--grace 5]
 *
 * Each of `--channels` group channels has one sender and `--recipients` recipients; every
 * recipient holds one Subscribe stream (its own user, device "bench") through the gateway, read by
 * a lean gRPC client (chat-kit rawSubscribe: node:http2, framing by hand, `--connections` HTTP/2
 * sessions). The load generator (a forked child; setup through the generated ChatService client
 * on connect-node's gRPC transport, the measured sends through the same lean client's rawSendMessage
 * on those `--connections` sessions) sends `--rate` messages per
 * second on a fixed schedule, round robin over the channels: message i is due at t0 + i / rate,
 * whether or not earlier sends have been answered (open loop: a slow server cannot slow the
 * offered load down and hide its own latency). Latency = time the recipient's stream yields the
 * message minus the message's *scheduled* send time, on the child's clock (sender and recipients
 * are in the same process); that is at least "receive minus send start", and also counts any lag
 * of the loader itself (reported as "start lag").
 *
 * Before the run, probe messages are sent on every channel until each recipient has seen one:
 * every stream is then attached (Subscribe delivers from the moment it is established). The
 * `--warmup` seconds at the same rate are checked but not in the latency figures.
 *
 * Correctness (exit 1 when any fails): every send acked; every recipient received every message
 * of its channel exactly once (lost = never received within `--grace` s after the last ack,
 * duplicated = received more than once); no stream ended early (e.g. slow consumer).
 *
 * `--group-size G` (single topology): G members per channel, i.e. `--recipients G-1`.
 *
 * Across chat servers (issue 12), `--topology split`:
 *
 *   npx tsx bench/chat-delivery.ts --topology split [--rate 1000] [--channels 50] [--senders 1] [--recipients 2]
 *                                  [--cross 1] [--gateways 1] [--connections 4] [--duration 30] [--warmup 3] [--warmup-rate R] [--grace 5]
 *   npx tsx bench/chat-delivery.ts --topology split --group-size 100 [--channels 1] [--senders 4] [--rate 200] [--receive session|subscribe] ...
 *
 * Cluster engine, every part its own process (chat-kit startSplitChatMesh): Cassandra, ZooKeeper,
 * NATS, Redis, `switchboard tokenrange`, two `switchboard chat`, `--gateways` `switchboard gateway`
 * (no presence service: chat's presence reports go to a closed port). Every member of every
 * channel is its own user holding one Session (device "bench") through a gateway, on a lean gRPC
 * client (chat-kit rawSession: node:http2, framing by hand, `--connections` HTTP/2 sessions shared
 * with the receivers); the Session's `opened` frame names the chat server it landed on. Sends are Session `send` frames, so the
 * server handling a send is the sender's server (a unary SendMessage is placed round robin).
 * The loader opens a pool of sessions (the gateway places them, least loaded first; more are
 * opened until each server holds enough) and then gives out the roles by server:
 * - default: `--senders` senders and `--recipients` recipients per channel; in the first
 *   `--cross` share of the channels the recipients sit on the other server than the senders
 *   (senders of even channels on one server, of odd ones on the other); the rest all on one.
 * - `--group-size G` (group fan-out): G members alternating between the servers, the first
 *   `--senders` of them send (message i through sender (i / channels) mod senders); every message
 *   must reach the G-1 other members (the sender's own copy is not counted). With `--receive
 *   subscribe` only the senders hold Sessions (placed on alternating servers as above); every other
 *   member receives on one Subscribe stream through the gateway (as browsers do), placed by the
 *   gateway, read by a lean gRPC client (chat-kit rawSubscribe: node:http2, framing by hand): the client cannot see which server holds it, so its deliveries are not classified
 *   crossed / same-server, and each chat server's chat_live_streams is printed instead.
 * `--warmup-rate R`: the warm-up at R messages/s instead of `--rate` (a fresh Cassandra compiles
 * its hot paths during the first minute at ~1 core; a warm-up at the full rate piles seconds of
 * backlog on the measured phase).
 * Every delivery is classified crossed / same-server from the two sessions' server ids, and
 * latency is reported for both side by side; `chat_routed_events_total{direction="in"}` of each
 * chat server over the phase is printed as a cross-check (it counts routed events, one per message
 * per peer server, not deliveries). Same correctness check as above, plus deliveries == expected.
 */
import { setMaxListeners } from "node:events";
import { fileURLToPath } from "node:url";
import type { ChatEvent } from "../gen/switchboard/chat/v1/chat_pb.js";
import {
  authHeaders,
  openLoop,
  fmt,
  formatCpu,
  isLoaderChild,
  loadGenerator,
  loaderChild,
  numberFlag,
  parseArgs,
  rawSendMessage,
  rawSession,
  rawSessionPool,
  rawSubscribe,
  type RawSessionCall,
  runHeader,
  runLoader,
  runMain,
  sleep,
  scrapeCounter,
  startChatMesh,
  startSplitChatMesh,
  subscribeBody,
  summarize,
  usage,
} from "./chat-kit.js";

interface Input {
  readonly baseUrl: string;
  readonly jwtSecret: string;
  readonly rate: number;
  readonly durationSecs: number;
  readonly warmupSecs: number;
  /** Messages/s of the warm-up (`--warmup-rate`, default `--rate`). */
  readonly warmupRate: number;
  readonly channels: number;
  readonly recipients: number;
  readonly connections: number;
  readonly graceSecs: number;
}

interface PhaseResult {
  readonly sent: number;
  readonly failed: number;
  readonly secs: number;
  /** Offered rate achieved: sends started per second. */
  readonly offered: number;
  readonly deliveries: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly latency: { p50: number; p99: number; max: number };
  readonly ack: { p50: number; p99: number; max: number };
  readonly startLag: { p50: number; p99: number; max: number };
}

interface Output {
  readonly warmup?: PhaseResult;
  readonly measured: PhaseResult;
  readonly streamErrors: readonly string[];
  readonly sendErrors: readonly string[];
  readonly otherEvents: number;
}

async function load(input: Input, phase: (name: string) => void): Promise<Output> {
  const { chatClient } = await loadGenerator();
  const clients = Array.from({ length: input.connections }, () => chatClient(input.baseUrl));
  const tag = Date.now().toString(36);
  const R = input.recipients;
  const senderOf = (c: number) => `bench-dlv-${tag}-s${c}`;
  const recipientOf = (c: number, j: number) => `bench-dlv-${tag}-r${c}-${j}`;
  const senderHeaders = Array.from({ length: input.channels }, (_, c) => authHeaders(input.jwtSecret, senderOf(c)));

  /** Per phase: scheduled time, first receipt per (message, recipient), receipt counts. */
  interface Track {
    readonly scheduled: Float64Array;
    readonly counts: Uint8Array;
    readonly latency: number[];
  }
  const tracks = new Map<string, Track>();
  const probesSeen = new Set<string>();
  const streamErrors: string[] = [];
  const sendErrors: string[] = [];
  let otherEvents = 0;
  const stop = new AbortController();
  // One signal for every stream: each call adds a listener to it.
  setMaxListeners(0, stop.signal);

  // Streams first: they must be attached before anything is sent. Read by a lean client
  // (chat-kit rawSubscribe), one HTTP/2 connection per --connections.
  const pool = rawSessionPool([input.baseUrl], (e) => streamErrors.push(e));
  stop.signal.addEventListener("abort", pool.close);
  const subscribeRequest = subscribeBody("bench");
  const streams: Promise<void>[] = [];
  for (let c = 0; c < input.channels; c++) {
    for (let j = 0; j < R; j++) {
      const onResponse = (res: { events: readonly ChatEvent[] }): void => {
        const now = performance.now();
        for (const event of res.events) {
          const ev = event.event;
          if (ev.case !== "message") {
            otherEvents++;
            continue;
          }
          const key = ev.value.clientMessageId;
          const colon = key.indexOf(":");
          const name = key.slice(0, colon);
          if (name === "probe") {
            probesSeen.add(`${c}/${j}`);
            continue;
          }
          const track = tracks.get(name);
          const i = Number(key.slice(colon + 1));
          if (!track || !Number.isInteger(i) || i % input.channels !== c) {
            streamErrors.push(`recipient ${c}/${j}: unexpected message ${key}`);
            continue;
          }
          const slot = i * R + j;
          if (track.counts[slot]! === 0) track.latency.push(now - track.scheduled[i]!);
          if (track.counts[slot]! < 255) track.counts[slot]!++;
        }
      };
      streams.push(
        new Promise<void>((resolve) => {
          const close = rawSubscribe(pool.session((c * R + j) % input.connections), authHeaders(input.jwtSecret, recipientOf(c, j)), subscribeRequest, {
            onResponse,
            onEnd: (why) => {
              if (!stop.signal.aborted) streamErrors.push(`recipient ${c}/${j}: stream ended (${why})`);
              resolve();
            },
          });
          stop.signal.addEventListener("abort", close, { once: true });
        }),
      );
    }
  }

  const channelIds: string[] = [];
  for (let c = 0; c < input.channels; c++) {
    const res = await clients[c % clients.length]!.createGroupChannel(
      { name: `bench delivery ${c}`, memberUserIds: Array.from({ length: R }, (_, j) => recipientOf(c, j)), requestId: `bench-dlv-${tag}-${c}` },
      { headers: senderHeaders[c]!, timeoutMs: 10_000 },
    );
    channelIds.push(res.channel!.channelId);
  }
  // Probe until every stream has seen a message of its channel (a stream still connecting misses one).
  const probeDeadline = performance.now() + 30_000;
  for (let n = 0; probesSeen.size < input.channels * R; n++) {
    if (performance.now() > probeDeadline) throw new Error(`only ${probesSeen.size} of ${input.channels * R} streams received a probe in 30 s (${streamErrors.slice(0, 3).join("; ")})`);
    await Promise.all(
      channelIds.map((channelId, c) =>
        clients[c % clients.length]!.sendMessage({ channelId, clientMessageId: `probe:${c}-${n}`, text: "probe" }, { headers: senderHeaders[c]!, timeoutMs: 10_000 }),
      ),
    );
    await sleep(200);
  }

  const run = async (name: string, secs: number, rate: number): Promise<PhaseResult> => {
    const total = Math.round(rate * secs);
    const track: Track = { scheduled: new Float64Array(total), counts: new Uint8Array(total * R), latency: [] };
    tracks.set(name, track);
    phase(name);
    const { ok, ackLat, lag, failed, offered, secsTaken } = await openLoop(total, rate, track.scheduled, (k) => {
      const c = k % input.channels;
      return rawSendMessage(pool.session(c % input.connections), senderHeaders[c]!, { channelId: channelIds[c]!, clientMessageId: `${name}:${k}`, text: `bench ${name} ${k}` }, 10_000).then(
        () => undefined,
        (e: unknown) => `${name}:${k}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }, sendErrors);
    phase(`end ${name}`);
    // Wait for the last deliveries, at most --grace s after the last ack.
    const expected = () => {
      let missing = 0;
      for (let i = 0; i < total; i++) if (ok[i]) for (let j = 0; j < R; j++) if (track.counts[i * R + j] === 0) missing++;
      return missing;
    };
    const graceEnd = performance.now() + input.graceSecs * 1000;
    while (expected() > 0 && performance.now() < graceEnd) await sleep(50);
    await sleep(200); // a duplicate right behind the first copy is counted too
    let lost = 0;
    let duplicated = 0;
    let deliveries = 0;
    for (let i = 0; i < total; i++) {
      if (!ok[i]) continue;
      for (let j = 0; j < R; j++) {
        const n = track.counts[i * R + j]!;
        deliveries += n;
        if (n === 0) lost++;
        if (n > 1) duplicated += n - 1;
      }
    }
    const pick = ({ p50, p99, max }: { p50: number; p99: number; max: number }) => ({ p50, p99, max });
    return {
      sent: total - failed,
      failed,
      secs: secsTaken,
      offered,
      deliveries,
      lost,
      duplicated,
      latency: pick(summarize(track.latency)),
      ack: pick(summarize(ackLat)),
      startLag: pick(summarize(lag)),
    };
  };

  const warmup = input.warmupSecs > 0 ? await run("warmup", input.warmupSecs, input.warmupRate) : undefined;
  const measured = await run("measured", input.durationSecs, input.rate);
  stop.abort();
  await Promise.all(streams);
  return { ...(warmup ? { warmup } : {}), measured, streamErrors: streamErrors.slice(0, 10), sendErrors, otherEvents };
}

async function main(): Promise<boolean> {
  const args = parseArgs();
  const topology = args.get("topology") ?? "single";
  if (topology === "split") return mainSplit(args);
  if (topology !== "single") usage(`--topology ${topology}: expected single or split`);
  const engineKind = args.get("engine") ?? "memory";
  const input: Omit<Input, "baseUrl" | "jwtSecret"> = {
    rate: numberFlag(args, "rate", 1000, 1),
    durationSecs: numberFlag(args, "duration", 30, 1),
    warmupSecs: numberFlag(args, "warmup", 3, 0),
    warmupRate: numberFlag(args, "warmup-rate", numberFlag(args, "rate", 1000, 1), 1),
    channels: numberFlag(args, "channels", 50, 1),
    recipients: args.has("group-size") ? numberFlag(args, "group-size", 3, 2) - 1 : numberFlag(args, "recipients", 2, 1),
    connections: numberFlag(args, "connections", 4, 1),
    graceSecs: numberFlag(args, "grace", 5, 0),
  };
  await loadGenerator(); // fail fast (exit 3) before starting any server
  const header = runHeader();
  // Streams per identity are capped at the gateway (16); every recipient here holds one.
  const mesh = await startChatMesh(engineKind, "chat_delivery");
  try {
    console.log(`mesh ready on ${mesh.baseUrl} (${engineKind} engine)`);
    const { result: r, cpu } = await runLoader<Output>(fileURLToPath(import.meta.url), { ...input, baseUrl: mesh.baseUrl, jwtSecret: mesh.jwtSecret }, mesh.processes);
    console.log(`\n${header}`);
    console.log(
      `engine ${engineKind}, ${input.rate} messages/s open loop over ${input.channels} group channels, ${input.recipients} subscribed recipients each ` +
        `(${input.channels * input.recipients} Subscribe streams), ${input.connections} HTTP/2 connections`,
    );
    console.log("\n| phase | engine | offered msg/s | sent | failed | deliveries | lost | duplicated | latency p50 ms | p99 ms | max ms | ack p50 / p99 ms | start lag p99 / max ms |");
    console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for (const [name, p] of [["warm-up", r.warmup], ["measured", r.measured]] as const) {
      if (!p) continue;
      console.log(
        `| ${name} | ${engineKind} | ${Math.round(p.offered)} | ${p.sent} | ${p.failed} | ${p.deliveries} | ${p.lost} | ${p.duplicated} | ` +
          `${fmt(p.latency.p50)} | ${fmt(p.latency.p99)} | ${fmt(p.latency.max)} | ${fmt(p.ack.p50)} / ${fmt(p.ack.p99)} | ${fmt(p.startLag.p99)} / ${fmt(p.startLag.max)} |`,
      );
    }
    console.log(`\nCPU during the measured sends (% of one core): ${formatCpu(cpu.get("measured"), r.measured.offered, "message")}`);
    console.log(`other live events seen (member changes, keep-alives): ${r.otherEvents}`);
    for (const e of r.sendErrors) console.log(`send error: ${e}`);
    for (const e of r.streamErrors) console.log(`stream error: ${e}`);
    const phases = [r.warmup, r.measured].filter((p): p is PhaseResult => p !== undefined);
    const passed =
      phases.every((p) => p.failed === 0 && p.lost === 0 && p.duplicated === 0) && r.streamErrors.length === 0 && r.measured.deliveries > 0;
    console.log(passed ? "CHECK ok: every send acked, every recipient got every message exactly once" : "FAIL: lost / duplicated / failed sends or stream errors (see above)");
    console.log(`target (p99 < 50 ms): ${r.measured.latency.p99 < 50 ? "met" : "NOT met"}`);
    return passed;
  } finally {
    await mesh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// --topology split: two chat servers (and 1-2 gateways) in processes of their own, cluster engine.

interface SplitInput {
  readonly baseUrls: readonly string[];
  readonly chatMetricsUrls: readonly string[];
  readonly jwtSecret: string;
  readonly rate: number;
  readonly durationSecs: number;
  readonly warmupSecs: number;
  /** Messages per second in the warm-up (default the measured rate). */
  readonly warmupRate: number;
  readonly channels: number;
  /** Members per channel. */
  readonly members: number;
  /** Members that send (the first `senders` of each channel), each through its own Session. */
  readonly senders: number;
  /** Group mode: every member but the sending one is a recipient, members alternate servers. */
  readonly group: boolean;
  /** Non-group mode: share of channels whose recipients sit on the other server than their senders. */
  readonly cross: number;
  /** Group mode: how the members that do not send receive: a Session each, or a Subscribe stream each. */
  readonly receive: "session" | "subscribe";
  readonly connections: number;
  readonly graceSecs: number;
}

type Stats = { n: number; p50: number; p99: number; max: number };

interface SplitPhase {
  readonly sent: number;
  readonly failed: number;
  readonly secs: number;
  readonly offered: number;
  readonly expected: number;
  readonly deliveries: number;
  readonly crossed: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly latency: Stats;
  readonly latencyCrossed: Stats;
  readonly latencyLocal: Stats;
  /** Deliveries to Subscribe streams, whose server the client cannot see. */
  readonly latencyUnplaced: Stats;
  readonly ack: Stats;
  readonly startLag: Stats;
  /** chat_routed_events_total{direction="in"} increase per chat server over the phase. */
  readonly routedIn: readonly number[];
}

interface SplitOutput {
  readonly warmup?: SplitPhase;
  readonly measured: SplitPhase;
  readonly servers: readonly { id: string; sessions: number; members: number }[];
  /** chat_live_streams of each chat server once every stream was attached (Sessions and Subscribe streams). */
  readonly liveStreams: readonly number[];
  readonly streamErrors: readonly string[];
  readonly sendErrors: readonly string[];
  readonly otherEvents: number;
  readonly echoes: number;
}


async function loadSplit(input: SplitInput, phase: (name: string) => void): Promise<SplitOutput> {
  const { chatClient } = await loadGenerator();
  const clients = Array.from({ length: input.connections }, (_, k) => chatClient(input.baseUrls[k % input.baseUrls.length]!));
  const tag = Date.now().toString(36);
  const C = input.channels;
  const M = input.members;
  const K = input.senders;
  const crossingChannels = input.group ? 0 : Math.round(input.cross * C);
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  const streamErrors: string[] = [];
  const sendErrors: string[] = [];
  let otherEvents = 0;
  let echoes = 0;

  interface Track {
    readonly total: number;
    readonly scheduled: Float64Array;
    readonly counts: Uint8Array;
    readonly crossed: number[];
    readonly local: number[];
    readonly unplaced: number[];
  }
  const tracks = new Map<string, Track>();
  const probesSeen = new Set<string>();
  /** Session of (channel, member), once roles are assigned. */
  const memberSession: Sess[][] = Array.from({ length: C }, () => []);
  const senderMember = (i: number) => Math.floor(i / C) % K;
  /** Whether member m of a channel must receive message i (never the member that sent it). */
  const tracked = (i: number, m: number) => m !== senderMember(i) && (input.group || m >= K);
  const subscribers = input.group && input.receive === "subscribe";
  /** Members that hold a Session (all, or only the senders when the others subscribe). */
  const holdsSession = (m: number) => !subscribers || m < K;
  const acks = new Map<string, (res: { ok: boolean; why?: string }) => void>();

  interface Sess {
    readonly user: string;
    /** Holds a Subscribe stream, not a Session (its server is not known to the client). */
    readonly subscribed?: boolean;
    /** The Session's frames out (a lean client: chat-kit rawSession); absent on a Subscribe stream. */
    call?: RawSessionCall;
    readonly opened: Promise<string>;
    server: string;
    role?: { c: number; m: number };
    done: Promise<void>;
  }

  const onEvents = (s: Sess, events: readonly ChatEvent[], now: number): void => {
    const user = s.user;
    for (const event of events) {
      const ev = event.event;
      if (ev.case !== "message") {
        otherEvents++;
        continue;
      }
      const role = s.role;
      const key = ev.value.clientMessageId;
      const colon = key.indexOf(":");
      const name = key.slice(0, colon);
      if (!role) {
        streamErrors.push(`${user} (no channel): unexpected message ${key}`);
        continue;
      }
      if (name === "probe") {
        // Member 0 sends the probes: its own copy proves nothing.
        if (role.m !== 0) probesSeen.add(`${role.c}/${role.m}`);
        continue;
      }
      const track = tracks.get(name);
      const i = Number(key.slice(colon + 1));
      if (!track || !Number.isInteger(i) || i % C !== role.c) {
        streamErrors.push(`member ${role.c}/${role.m}: unexpected message ${key}`);
        continue;
      }
      if (!tracked(i, role.m)) {
        // The sender's own copy (Chat.send delivers to every member's streams) or, outside
        // group mode, a co-sender's: not part of the figures.
        echoes++;
        continue;
      }
      const slot = i * M + role.m;
      if (track.counts[slot]! === 0) {
        const from = memberSession[role.c]![senderMember(i)]!;
        (s.subscribed ? track.unplaced : from.server === s.server ? track.local : track.crossed).push(now - track.scheduled[i]!);
      }
      if (track.counts[slot]! < 255) track.counts[slot]!++;
    }
  };

  /** A member that only receives, on a Subscribe stream (its role is known from the start). */
  // Receivers read on raw HTTP/2 sessions (chat-kit rawSubscribe: a lean client), one per connection.
  const pool = rawSessionPool(input.baseUrls, (e) => streamErrors.push(e));
  stop.signal.addEventListener("abort", pool.close);
  const subscribeRequest = subscribeBody("bench");
  const openSubscriber = (n: number, role: { c: number; m: number }): Sess => {
    const user = `bench-xs-${tag}-u${n}`;
    const s: Sess = { user, subscribed: true, opened: Promise.resolve(""), server: "", role, done: Promise.resolve() };
    s.done = new Promise<void>((resolve) => {
      const close = rawSubscribe(pool.session(n % input.connections), authHeaders(input.jwtSecret, user), subscribeRequest, {
        onResponse: (res) => onEvents(s, res.events, performance.now()),
        onEnd: (why) => {
          if (!stop.signal.aborted) streamErrors.push(`${user}: stream ended (${why})`);
          resolve();
        },
      });
      stop.signal.addEventListener("abort", close, { once: true });
    });
    return s;
  };

  const openSession = (n: number): Sess => {
    const user = `bench-xs-${tag}-u${n}`;
    let resolveOpened!: (id: string) => void;
    let rejectOpened!: (e: unknown) => void;
    const opened = new Promise<string>((res, rej) => ((resolveOpened = res), (rejectOpened = rej)));
    opened.catch(() => undefined);
    const s: Sess = { user, opened, server: "", done: Promise.resolve() };
    s.done = new Promise<void>((resolve) => {
      s.call = rawSession(pool.session(n % input.connections), authHeaders(input.jwtSecret, user), {
        onResponse: (res) => {
          const now = performance.now();
          const f = res.frame;
          if (f.case === "opened") {
            s.server = f.value.serverId;
            resolveOpened(f.value.serverId);
          } else if (f.case === "sendAck") {
            const done = acks.get(f.value.clientMessageId);
            acks.delete(f.value.clientMessageId);
            if (f.value.result.case === "sent") done?.({ ok: true });
            else done?.({ ok: false, why: f.value.result.case === "error" ? `${f.value.result.value.code} ${f.value.result.value.message}` : "empty ack" });
          } else if (f.case === "events") {
            onEvents(s, f.value.events, now);
          }
        },
        onEnd: (why) => {
          if (!stop.signal.aborted) streamErrors.push(`${user}: session ended (${why})`);
          rejectOpened(new Error(`${user}: session ended before its opened frame (${why})`));
          resolve();
        },
      });
    });
    s.call!.send({ frame: { case: "open", value: { deviceId: "bench" } } });
    return s;
  };

  // Roles: which server each member of each channel must sit on (0 = first server id, 1 = second).
  const want = (c: number, m: number): number => {
    const home = c % 2; // senders of even channels on server 0, of odd ones on server 1
    if (input.group) return (m + c) % 2;
    if (m < K) return home;
    return c < crossingChannels ? 1 - home : home;
  };
  const need = [0, 0];
  for (let c = 0; c < C; c++) for (let m = 0; m < M; m++) if (holdsSession(m)) need[want(c, m)]!++;

  // Open a pool of sessions; the gateway's placement decides where each lands (least loaded),
  // the `opened` frame says where. Open more until both servers hold enough of them.
  const sessions: Sess[] = [];
  const deadline = performance.now() + 60_000;
  let toOpen = need[0]! + need[1]!;
  let ids: string[] = [];
  for (;;) {
    const wave: Sess[] = [];
    for (let k = 0; k < toOpen; k++) {
      const s = openSession(sessions.length);
      sessions.push(s);
      wave.push(s);
    }
    const opening = Promise.all(wave.map((s) => s.opened));
    if ((await Promise.race([opening, sleep(30_000).then(() => "timeout" as const)])) === "timeout") {
      throw new Error(`${wave.length} sessions not all opened within 30 s (${streamErrors.slice(0, 3).join("; ")})`);
    }
    ids = [...new Set(sessions.map((s) => s.server))].sort();
    if (ids.length > 2) throw new Error(`sessions landed on ${ids.length} chat servers; the split topology expects 2`);
    const on = (k: number) => sessions.filter((s) => s.server === ids[k]).length;
    const short = Math.max(0, need[0]! - on(0)) + Math.max(0, need[1]! - on(1));
    if (ids.length === 2 && short === 0) break;
    if (performance.now() > deadline || sessions.length > 4 * (need[0]! + need[1]!)) {
      throw new Error(`placement: ${sessions.length} sessions opened, per server ${ids.map((id, k) => `${id}: ${on(k)}`).join(", ")}; needed ${need.join(" / ")}`);
    }
    toOpen = Math.max(short, 1);
    await sleep(1100); // the servers' load reports reach the gateways within about a second
  }
  const pools = ids.map((id) => sessions.filter((s) => s.server === id));
  const taken = [0, 0];
  for (let c = 0; c < C; c++) {
    for (let m = 0; m < M; m++) {
      if (!holdsSession(m)) {
        memberSession[c]![m] = openSubscriber(sessions.length + c * M + m, { c, m });
        continue;
      }
      const k = want(c, m);
      const s = pools[k]![taken[k]!++]!;
      s.role = { c, m };
      memberSession[c]![m] = s;
    }
  }
  const servers = ids.map((id, k) => ({ id, sessions: pools[k]!.length, members: taken[k]! }));
  const subscriberStreams = memberSession.flat().filter((s) => s.subscribed);

  const channelIds: string[] = [];
  for (let c = 0; c < C; c++) {
    const owner = memberSession[c]![0]!.user;
    const res = await clients[c % clients.length]!.createGroupChannel(
      { name: `bench split ${c}`, memberUserIds: memberSession[c]!.slice(1).map((s) => s.user), requestId: `bench-xs-${tag}-${c}` },
      { headers: authHeaders(input.jwtSecret, owner), timeoutMs: 10_000 },
    );
    channelIds.push(res.channel!.channelId);
  }

  const sendFrame = (c: number, m: number, clientMessageId: string, text: string): Promise<{ ok: boolean; why?: string }> =>
    new Promise((resolve) => {
      acks.set(clientMessageId, resolve);
      memberSession[c]![m]!.call!.send({ frame: { case: "send", value: { channelId: channelIds[c]!, clientMessageId, text } } });
    });
  const withTimeout = <T,>(p: Promise<T>, ms: number, fallback: T): Promise<T> =>
    Promise.race([p, sleep(ms).then(() => fallback)]);

  // Probe until every member session has seen a message of its channel (member 0 sends them).
  const probeDeadline = performance.now() + 30_000;
  const probeTargets = C * (M - 1);
  for (let n = 0; probesSeen.size < probeTargets; n++) {
    if (performance.now() > probeDeadline) throw new Error(`only ${probesSeen.size} of ${probeTargets} sessions received a probe in 30 s (${streamErrors.slice(0, 3).join("; ")})`);
    const res = await Promise.all(channelIds.map((_, c) => withTimeout(sendFrame(c, 0, `probe:${c}-${n}`, "probe"), 10_000, { ok: false, why: "no ack in 10 s" })));
    const bad = res.find((r) => !r.ok);
    if (bad) throw new Error(`probe send failed: ${bad.why}`);
    await sleep(200);
  }

  const routedIn = () => Promise.all(input.chatMetricsUrls.map((u) => scrapeCounter(u, "chat_routed_events_total", 'direction="in"')));

  const run = async (name: string, secs: number, rate: number): Promise<SplitPhase> => {
    const total = Math.round(rate * secs);
    const track: Track = { total, scheduled: new Float64Array(total), counts: new Uint8Array(total * M), crossed: [], local: [], unplaced: [] };
    tracks.set(name, track);
    const routed0 = await routedIn();
    phase(name);
    const { ok, ackLat, lag, failed, offered, secsTaken } = await openLoop(
      total,
      rate,
      track.scheduled,
      (k) =>
        withTimeout(sendFrame(k % C, senderMember(k), `${name}:${k}`, `bench ${name} ${k}`), 10_000, { ok: false, why: "no send_ack within 10 s" }).then(
          (r) => (r.ok ? undefined : `${name}:${k}: ${r.why}`),
        ),
      sendErrors,
    );
    phase(`end ${name}`);
    const missing = () => {
      let n = 0;
      for (let i = 0; i < total; i++) if (ok[i]) for (let m = 0; m < M; m++) if (tracked(i, m) && track.counts[i * M + m] === 0) n++;
      return n;
    };
    const graceEnd = performance.now() + input.graceSecs * 1000;
    while (missing() > 0 && performance.now() < graceEnd) await sleep(50);
    await sleep(200);
    const routed1 = await routedIn();
    let expected = 0;
    let lost = 0;
    let duplicated = 0;
    let deliveries = 0;
    let crossed = 0;
    for (let i = 0; i < total; i++) {
      if (!ok[i]) continue;
      const c = i % C;
      const from = memberSession[c]![senderMember(i)]!.server;
      for (let m = 0; m < M; m++) {
        if (!tracked(i, m)) continue;
        expected++;
        const n = track.counts[i * M + m]!;
        deliveries += n;
        if (n > 0 && !memberSession[c]![m]!.subscribed && memberSession[c]![m]!.server !== from) crossed++;
        if (n === 0) lost++;
        if (n > 1) duplicated += n - 1;
      }
    }
    const all = [...track.crossed, ...track.local, ...track.unplaced];
    return {
      sent: total - failed,
      failed,
      secs: secsTaken,
      offered,
      expected,
      deliveries,
      crossed,
      lost,
      duplicated,
      latency: summarize(all),
      latencyCrossed: summarize(track.crossed),
      latencyLocal: summarize(track.local),
      latencyUnplaced: summarize(track.unplaced),
      ack: summarize(ackLat),
      startLag: summarize(lag),
      routedIn: routed1.map((v, k) => v - routed0[k]!),
    };
  };

  // Every stream is attached (each saw a probe): where the chat servers hold them.
  const liveStreams = await Promise.all(input.chatMetricsUrls.map((u) => scrapeCounter(u, "chat_live_streams")));
  const warmup = input.warmupSecs > 0 ? await run("warmup", input.warmupSecs, input.warmupRate) : undefined;
  const measured = await run("measured", input.durationSecs, input.rate);
  stop.abort();
  for (const s of sessions) s.call?.end();
  await Promise.all([...sessions, ...subscriberStreams].map((s) => s.done));
  return { ...(warmup ? { warmup } : {}), measured, servers, liveStreams, streamErrors: streamErrors.slice(0, 10), sendErrors, otherEvents, echoes };
}

function receiveFlag(args: ReturnType<typeof parseArgs>, group: boolean): "session" | "subscribe" {
  const v = args.get("receive") ?? "session";
  if (v !== "session" && v !== "subscribe") usage(`--receive is session or subscribe (got ${v})`);
  if (v === "subscribe" && !group) usage("--receive subscribe is for --group-size runs (a Subscribe stream does not say which server it is on)");
  return v;
}

async function mainSplit(args: ReturnType<typeof parseArgs>): Promise<boolean> {
  const groupSize = args.has("group-size") ? numberFlag(args, "group-size", 100, 2) : undefined;
  const group = groupSize !== undefined;
  const senders = numberFlag(args, "senders", group ? 4 : 1, 1);
  const recipients = numberFlag(args, "recipients", 2, 1);
  const members = group ? groupSize : senders + recipients;
  if (senders >= members) usage(`--senders ${senders} must be below the members per channel (${members})`);
  const gateways = numberFlag(args, "gateways", 1, 1);
  const input: Omit<SplitInput, "baseUrls" | "chatMetricsUrls" | "jwtSecret"> = {
    rate: numberFlag(args, "rate", 1000, 1),
    durationSecs: numberFlag(args, "duration", 30, 1),
    warmupSecs: numberFlag(args, "warmup", 3, 0),
    warmupRate: numberFlag(args, "warmup-rate", numberFlag(args, "rate", 1000, 1), 1),
    channels: numberFlag(args, "channels", group ? 1 : 50, 1),
    members,
    senders,
    group,
    cross: numberFlag(args, "cross", 1, 0),
    receive: receiveFlag(args, group),
    connections: numberFlag(args, "connections", 4, 1),
    graceSecs: numberFlag(args, "grace", 5, 0),
  };
  if (input.cross > 1) usage("--cross is a share of the channels, 0..1");
  if (args.has("engine") && args.get("engine") !== "cluster") usage("--topology split runs on the cluster engine only");
  await loadGenerator();
  const header = runHeader();
  const mesh = await startSplitChatMesh("chat_split", 2, gateways);
  try {
    console.log(`split mesh ready: gateways ${mesh.baseUrls.join(", ")}; 2 chat servers (cluster engine, every part its own process)`);
    const { result: r, cpu } = await runLoader<SplitOutput>(
      fileURLToPath(import.meta.url),
      { ...input, baseUrls: mesh.baseUrls, chatMetricsUrls: mesh.chatMetricsUrls, jwtSecret: mesh.jwtSecret },
      mesh.processes,
    );
    console.log(`\n${header}`);
    const shape = group
      ? input.receive === "subscribe"
        ? `group fan-out: ${input.channels} group(s) of ${members} members, ${senders} of them send (each through its own Session, alternating servers), the others receive on one Subscribe stream each (placed by the gateway); every message must reach the ${members - 1} other members`
        : `group fan-out: ${input.channels} group(s) of ${members} members, members alternate between the two servers, ${senders} of them send (each through its own Session); every message must reach the ${members - 1} other members`
      : `${input.channels} group channels of ${senders} sender(s) + ${recipients} recipients; in ${Math.round(input.cross * input.channels)} of them the recipients sit on the other chat server than the senders`;
    console.log(
      `topology split (cluster engine: tokenrange, 2 chat servers, ${gateways} gateway(s) as processes of their own), ${input.rate} messages/s open loop, ` +
        `${shape}; ${input.receive === "subscribe" ? "" : "one Session per member (device \"bench\"), "}sends as Session send frames; ${input.connections} HTTP/2 connections`,
    );
    console.log(
      `chat servers: ${r.servers.map((s, k) => `${s.id} (${s.sessions} sessions, ${s.members} channel members by Session; ${r.liveStreams[k] ?? "?"} live streams in all)`).join(", ")}`,
    );
    const sub = input.receive === "subscribe";
    console.log(
      `\n| phase | offered msg/s | sent | failed | deliveries (expected) | deliveries/s | crossed servers | lost | duplicated | latency p50 ms | p99 ms | max ms | ${sub ? "to Subscribe streams p50 / p99 ms" : "crossed p50 / p99 ms | same-server p50 / p99 ms"} | ack p50 / p99 ms | start lag p99 / max ms | routed in per server |`,
    );
    console.log(`|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|${sub ? "" : "---|"}---|---|---|`);
    for (const [name, p] of [["warm-up", r.warmup], ["measured", r.measured]] as const) {
      if (!p) continue;
      console.log(
        `| ${name} | ${Math.round(p.offered)} | ${p.sent} | ${p.failed} | ${p.deliveries} (${p.expected}) | ${Math.round(p.deliveries / p.secs)} | ` +
          `${p.deliveries > 0 ? ((100 * p.crossed) / p.deliveries).toFixed(1) : "-"}% | ${p.lost} | ${p.duplicated} | ` +
          `${fmt(p.latency.p50)} | ${fmt(p.latency.p99)} | ${fmt(p.latency.max)} | ` +
          `${sub ? `${fmt(p.latencyUnplaced.p50)} / ${fmt(p.latencyUnplaced.p99)}` : `${fmt(p.latencyCrossed.p50)} / ${fmt(p.latencyCrossed.p99)} | ${fmt(p.latencyLocal.p50)} / ${fmt(p.latencyLocal.p99)}`} | ${fmt(p.ack.p50)} / ${fmt(p.ack.p99)} | ${fmt(p.startLag.p99)} / ${fmt(p.startLag.max)} | ${p.routedIn.join(" / ")} |`,
      );
    }
    const m = r.measured;
    console.log(`\nCPU during the measured sends (% of one core): ${formatCpu(cpu.get("measured"), m.offered, "message")}`);
    console.log(`other live events seen (member changes, keep-alives): ${r.otherEvents}; senders' own copies (not counted): ${r.echoes}`);
    for (const e of r.sendErrors) console.log(`send error: ${e}`);
    for (const e of r.streamErrors) console.log(`stream error: ${e}`);
    const phases = [r.warmup, r.measured].filter((p): p is SplitPhase => p !== undefined);
    const passed =
      phases.every((p) => p.failed === 0 && p.lost === 0 && p.duplicated === 0 && p.deliveries === p.expected) && r.streamErrors.length === 0 && m.deliveries > 0;
    console.log(passed ? "CHECK ok: every send acked, every recipient got every message exactly once" : "FAIL: lost / duplicated / failed sends or stream errors (see above)");
    if (group) console.log(`target (>= 20,000 deliveries/s): ${m.deliveries / m.secs >= 20_000 && passed ? "met" : "NOT met"} (${Math.round(m.deliveries / m.secs)}/s)`);
    else console.log(`target (p99 < 50 ms at 1,000/s, across servers): ${m.latencyCrossed.p99 < 50 ? "met" : "NOT met"} at ${input.rate}/s (crossed p99 ${fmt(m.latencyCrossed.p99)} ms)`);
    return passed;
  } finally {
    await mesh.close();
  }
}

if (isLoaderChild()) loaderChild((input: Input | SplitInput, phase) => ("baseUrls" in input ? loadSplit(input, phase) : load(input, phase)));
else runMain(main);
