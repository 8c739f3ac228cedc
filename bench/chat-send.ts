/**
 * Benchmark (not a test): chat sends per second through the gateway, each acknowledged only after
 * the database write (SendMessage answers after putMessage), issue 9 acceptance (a).
 *
 *   npx tsx bench/chat-send.ts [--engine cluster|memory] [--senders 64] [--channels 16]
 *                              [--connections 4] [--warmup 5] [--duration 20]
 *
 * The mesh runs embedded in this process (cluster: Cassandra, ZooKeeper, NATS, Redis from
 * testkit, see bench/chat-kit.ts); the load generator is a forked child: setup and the history
 * check through the generated ChatService client over connect-node's gRPC transport (h2c), the
 * measured sends through a lean gRPC client (chat-kit rawSendMessage: node:http2, framing by
 * hand), `--connections` HTTP/2 sessions each.
 * `--senders` users, each a closed loop of SendMessage calls (a fresh client_message_id per call)
 * into its group channel; the senders are spread over `--channels` groups (members: the senders of
 * that group). A warm-up of `--warmup` s (JIT, Cassandra's caches) comes first and is not counted.
 *
 * Correctness (exit 1 when any fails): every call succeeded, every ack carries a non-zero
 * message_id and duplicate = false, no message_id was acked twice, and afterwards each channel's
 * full history read back through GetHistory (pages of 200, newest to oldest) holds exactly the
 * acked ids, in ascending order within each page, none twice.
 */
import { fileURLToPath } from "node:url";
import {
  authHeaders,
  fmt,
  formatCpu,
  isLoaderChild,
  loadGenerator,
  loaderChild,
  numberFlag,
  parseArgs,
  rawSendMessage,
  rawSessionPool,
  runHeader,
  runLoader,
  runMain,
  startChatMesh,
  summarize,
} from "./chat-kit.js";

interface Input {
  readonly baseUrl: string;
  readonly jwtSecret: string;
  readonly senders: number;
  readonly channels: number;
  readonly connections: number;
  readonly warmupSecs: number;
  readonly durationSecs: number;
}

interface Window {
  readonly ok: number;
  readonly failed: number;
  readonly secs: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface Output {
  readonly warmup: Window;
  readonly measured: Window;
  readonly errors: readonly string[];
  readonly problems: readonly string[];
  readonly acked: number;
  readonly inHistory: number;
  readonly historyPages: number;
}

async function load(input: Input, phase: (name: string) => void): Promise<Output> {
  const { chatClient } = await loadGenerator();
  const clients = Array.from({ length: input.connections }, () => chatClient(input.baseUrl));
  const tag = Date.now().toString(36);
  const userOf = (s: number) => `bench-send-${tag}-${s}`;
  const headers = Array.from({ length: input.senders }, (_, s) => authHeaders(input.jwtSecret, userOf(s)));
  const problems: string[] = [];
  const errors: string[] = [];

  // Group c: the senders s with s % channels == c; the first of them creates it.
  const channelIds: string[] = [];
  for (let c = 0; c < input.channels; c++) {
    const members: string[] = [];
    for (let s = c + input.channels; s < input.senders; s += input.channels) members.push(userOf(s));
    const res = await clients[c % clients.length]!.createGroupChannel(
      { name: `bench send ${c}`, memberUserIds: members, requestId: `bench-send-${tag}-${c}` },
      { headers: headers[c]!, timeoutMs: 10_000 },
    );
    channelIds.push(res.channel!.channelId);
  }
  const ackedByChannel = channelIds.map(() => [] as bigint[]);
  const seen = new Set<bigint>();

  // The measured sends on the lean client (chat-kit rawSendMessage), `--connections` HTTP/2 sessions.
  const pool = rawSessionPool([input.baseUrl], (e) => errors.length < 5 && errors.push(e));
  const run = async (name: string, secs: number): Promise<Window> => {
    phase(name);
    const lat: number[] = [];
    let failed = 0;
    const t0 = performance.now();
    const end = t0 + secs * 1000;
    await Promise.all(
      Array.from({ length: input.senders }, async (_, s) => {
        const c = s % input.channels;
        const channelId = channelIds[c]!;
        for (let k = 0; performance.now() < end; k++) {
          const clientMessageId = `${name}-${s}-${k}`;
          const start = performance.now();
          try {
            const res = await rawSendMessage(pool.session(s % input.connections), headers[s]!, { channelId, clientMessageId, text: `bench ${name} ${s}/${k}` }, 10_000);
            lat.push(performance.now() - start);
            const id = res.message?.messageId ?? 0n;
            if (id === 0n) problems.push(`${clientMessageId}: ack without a message_id`);
            else if (seen.has(id)) problems.push(`${clientMessageId}: message_id ${id} acked twice`);
            else {
              seen.add(id);
              ackedByChannel[c]!.push(id);
            }
            if (res.duplicate) problems.push(`${clientMessageId}: first send acked as duplicate`);
            if (res.message?.channelId !== channelId) problems.push(`${clientMessageId}: ack names channel ${res.message?.channelId}`);
          } catch (e) {
            failed++;
            if (errors.length < 5) errors.push(`${clientMessageId}: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    phase(`end ${name}`);
    const { p50, p99, max } = summarize(lat);
    return { ok: lat.length, failed, secs: wall, p50, p99, max };
  };

  const warmup = input.warmupSecs > 0 ? await run("warmup", input.warmupSecs) : { ok: 0, failed: 0, secs: 0, p50: NaN, p99: NaN, max: NaN };
  const measured = await run("measured", input.durationSecs);

  // Read every channel back through the gateway: the acks must be exactly what is stored.
  let inHistory = 0;
  let historyPages = 0;
  for (let c = 0; c < channelIds.length; c++) {
    const stored = new Set<bigint>();
    let before: bigint | undefined;
    for (;;) {
      const page = await clients[0]!.getHistory(
        before === undefined ? { channelId: channelIds[c], pageSize: 200 } : { channelId: channelIds[c], pageSize: 200, anchor: { case: "beforeId", value: before } },
        { headers: headers[c]!, timeoutMs: 30_000 },
      );
      historyPages++;
      const ids = page.messages.map((m) => m.messageId);
      for (let i = 1; i < ids.length; i++) if (ids[i]! <= ids[i - 1]!) problems.push(`channel ${c}: history page not ascending at ${ids[i]}`);
      for (const id of ids) {
        if (stored.has(id)) problems.push(`channel ${c}: message ${id} twice in history`);
        stored.add(id);
      }
      if (!page.hasMore || ids.length === 0) break;
      before = ids[0];
    }
    inHistory += stored.size;
    const acked = ackedByChannel[c]!;
    if (stored.size !== acked.length) problems.push(`channel ${c}: ${acked.length} acked, ${stored.size} in history`);
    let missing = 0;
    for (const id of acked) if (!stored.has(id)) missing++;
    if (missing > 0) problems.push(`channel ${c}: ${missing} acked messages missing from history`);
  }
  return { warmup, measured, errors, problems: problems.slice(0, 20), acked: seen.size, inHistory, historyPages };
}

async function main(): Promise<boolean> {
  const args = parseArgs();
  const engineKind = args.get("engine") ?? "cluster";
  const input: Omit<Input, "baseUrl" | "jwtSecret"> = {
    senders: numberFlag(args, "senders", 64, 1),
    channels: numberFlag(args, "channels", 16, 1),
    connections: numberFlag(args, "connections", 4, 1),
    warmupSecs: numberFlag(args, "warmup", 5, 0),
    durationSecs: numberFlag(args, "duration", 20, 1),
  };
  if (input.channels > input.senders) console.log("note: more channels than senders; the extra channels stay empty");
  await loadGenerator(); // fail fast (exit 3) before starting any server
  const header = runHeader();
  const mesh = await startChatMesh(engineKind, "chat_send");
  try {
    console.log(`mesh ready on ${mesh.baseUrl} (${engineKind} engine)`);
    const { result: r, cpu } = await runLoader<Output>(fileURLToPath(import.meta.url), { ...input, baseUrl: mesh.baseUrl, jwtSecret: mesh.jwtSecret }, mesh.processes);
    const rate = r.measured.ok / r.measured.secs;
    console.log(`\n${header}`);
    console.log(`engine ${engineKind}, ${input.senders} senders over ${input.channels} group channels, ${input.connections} HTTP/2 connections`);
    console.log(`warm-up ${input.warmupSecs} s: ${r.warmup.ok} acked (${Math.round(r.warmup.ok / (r.warmup.secs || 1))}/s), ${r.warmup.failed} failed`);
    console.log("\n| engine | sends/s | p50 ms | p99 ms | max ms | acked | failed | secs |");
    console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
    console.log(`| ${engineKind} | ${Math.round(rate)} | ${fmt(r.measured.p50)} | ${fmt(r.measured.p99)} | ${fmt(r.measured.max)} | ${r.measured.ok} | ${r.measured.failed} | ${r.measured.secs.toFixed(1)} |`);
    console.log(`\nCPU during the measured run (% of one core): ${formatCpu(cpu.get("measured"), rate, "send")}`);
    console.log(`history check: ${r.acked} acked in total (warm-up + measured), ${r.inHistory} in GetHistory (${r.historyPages} pages)`);
    for (const e of r.errors) console.log(`error: ${e}`);
    for (const p of r.problems) console.log(`CHECK FAILED: ${p}`);
    const passed = r.warmup.failed === 0 && r.measured.failed === 0 && r.problems.length === 0 && r.measured.ok > 0;
    console.log(passed ? "CHECK ok: every send acked with an id, no duplicates, history == acked" : "FAIL: see errors / CHECK FAILED above");
    const target = rate >= 2000 && r.measured.p99 < 50;
    console.log(`target (>= 2,000 sends/s, p99 < 50 ms${engineKind === "cluster" ? "" : "; set for the cluster engine"}): ${target ? "met" : "NOT met"}`);
    return passed;
  } finally {
    await mesh.close();
  }
}

if (isLoaderChild()) loaderChild(load);
else runMain(main);
