/**
 * Benchmark (not a test): sender-to-recipient live delivery latency through the gateway at a fixed
 * send rate (open loop), issue 9 acceptance (b).
 *
 *   npx tsx bench/chat-delivery.ts [--engine memory|cluster] [--rate 1000] [--duration 30] [--warmup 3]
 *                                  [--channels 50] [--recipients 2] [--connections 4] [--grace 5]
 *
 * Each of `--channels` group channels has one sender and `--recipients` recipients; every
 * recipient holds one Subscribe stream (its own user, device "bench") through the gateway. The
 * load generator (a forked child: generated ChatService client, connect-node gRPC transport over
 * h2c, `--connections` HTTP/2 sessions shared by senders and streams) sends `--rate` messages per
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
 */
import { setMaxListeners } from "node:events";
import { fileURLToPath } from "node:url";
import { ConnectError } from "@connectrpc/connect";
import {
  authHeaders,
  fmt,
  formatCpu,
  isLoaderChild,
  loadGenerator,
  loaderChild,
  numberFlag,
  parseArgs,
  runHeader,
  runLoader,
  runMain,
  sleep,
  startChatMesh,
  summarize,
} from "./chat-kit.js";

interface Input {
  readonly baseUrl: string;
  readonly jwtSecret: string;
  readonly rate: number;
  readonly durationSecs: number;
  readonly warmupSecs: number;
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

  // Streams first: they must be attached before anything is sent.
  const streams: Promise<void>[] = [];
  for (let c = 0; c < input.channels; c++) {
    for (let j = 0; j < R; j++) {
      const client = clients[(c * R + j) % clients.length]!;
      const headers = authHeaders(input.jwtSecret, recipientOf(c, j));
      streams.push(
        (async () => {
          try {
            for await (const res of client.subscribe({ deviceId: "bench" }, { headers, signal: stop.signal })) {
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
            }
            if (!stop.signal.aborted) streamErrors.push(`recipient ${c}/${j}: stream ended by the server`);
          } catch (e) {
            if (!stop.signal.aborted) streamErrors.push(`recipient ${c}/${j}: ${e instanceof ConnectError ? `${e.code} ${e.rawMessage}` : String(e)}`);
          }
        })(),
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

  const run = async (name: string, secs: number): Promise<PhaseResult> => {
    const total = Math.round(input.rate * secs);
    const track: Track = { scheduled: new Float64Array(total), counts: new Uint8Array(total * R), latency: [] };
    tracks.set(name, track);
    const ok = new Uint8Array(total);
    const ackLat: number[] = [];
    const lag: number[] = [];
    let failed = 0;
    const inFlight = new Set<Promise<void>>();
    const interval = 1000 / input.rate;
    phase(name);
    const t0 = performance.now() + 20;
    for (let i = 0; i < total; ) {
      const now = performance.now();
      for (; i < total && t0 + i * interval <= now; i++) {
        // The callbacks below run later, after i has moved on.
        const k = i;
        const scheduled = t0 + k * interval;
        track.scheduled[k] = scheduled;
        const c = k % input.channels;
        const start = performance.now();
        lag.push(start - scheduled);
        const p = clients[c % clients.length]!
          .sendMessage({ channelId: channelIds[c]!, clientMessageId: `${name}:${k}`, text: `bench ${name} ${k}` }, { headers: senderHeaders[c]!, timeoutMs: 10_000 })
          .then(
            () => {
              ok[k] = 1;
              ackLat.push(performance.now() - start);
            },
            (e: unknown) => {
              failed++;
              if (sendErrors.length < 5) sendErrors.push(`${name}:${k}: ${e instanceof ConnectError ? `${e.code} ${e.rawMessage}` : String(e)}`);
            },
          )
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      if (i < total) await sleep(Math.max(0, t0 + i * interval - performance.now()));
    }
    const offered = total / ((performance.now() - t0) / 1000);
    await Promise.all(inFlight);
    const secsTaken = (performance.now() - t0) / 1000;
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

  const warmup = input.warmupSecs > 0 ? await run("warmup", input.warmupSecs) : undefined;
  const measured = await run("measured", input.durationSecs);
  stop.abort();
  await Promise.all(streams);
  return { ...(warmup ? { warmup } : {}), measured, streamErrors: streamErrors.slice(0, 10), sendErrors, otherEvents };
}

async function main(): Promise<boolean> {
  const args = parseArgs();
  const engineKind = args.get("engine") ?? "memory";
  const input: Omit<Input, "baseUrl" | "jwtSecret"> = {
    rate: numberFlag(args, "rate", 1000, 1),
    durationSecs: numberFlag(args, "duration", 30, 1),
    warmupSecs: numberFlag(args, "warmup", 3, 0),
    channels: numberFlag(args, "channels", 50, 1),
    recipients: numberFlag(args, "recipients", 2, 1),
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

if (isLoaderChild()) loaderChild(load);
else runMain(main);
