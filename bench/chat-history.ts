/**
 * Benchmark (not a test): GetHistory page latency through the gateway (page_size 50), issue 9
 * acceptance (c), for
 *   (1) a dense channel with `--messages` messages (default 1,000,000) over the last `--span-days`
 *       days (default 30), and
 *   (2) a sparse channel of `--sparse` messages (default 100) spread evenly from 2025-01-02 to
 *       yesterday: the snowflake epoch (services/tokenrange/snowflake.ts) is 2025-01-01, so ids
 *       cannot be older; ~100 messages ~7 days apart, nearly one per 10-day bucket, is the
 *       most buckets one page can touch.
 *
 *   npx tsx bench/chat-history.ts [--engine cluster|memory] [--messages 1000000] [--span-days 30] [--sparse 100]
 *                                 [--requests 2000] [--concurrency 4] [--warmup 200] [--in-flight 256] [--dataset NAME]
 *                                 [--profile DIR] [--quiet-db PCT]
 *
 * `--quiet-db PCT`: after seeding, wait (at most 5 min, sampling 5 s at a time) until Cassandra
 * uses less than PCT % of a core before reading: the compaction a 100,000-write bulk load leaves
 * keeps Cassandra busy (half a core or more for 10-15 s on the reference box), and pages read
 * meanwhile measure that.
 *
 * Per kind the bench also prints pages/s and each process's CPU per page.
 *
 * `--profile DIR`: a V8 CPU profile of the mesh process (gateway and chat server, one process)
 * over the page reads only (seeding excluded), written to DIR/history-<pid>.cpuprofile.
 *
 * Seeding goes straight into the ChatStore (`createChatStore(engine)`, services/chat/store.ts),
 * not through 1M SendMessage calls: `putMessage` with `--in-flight` writes outstanding (progress
 * printed every 5 s). The ids are built, not minted: `(ms - SNOWFLAKE_EPOCH_MS) << 22 | worker
 * 1023 << 12 | seq`, strictly increasing with the message index, so the expected page for any
 * anchor is known. The channels themselves are created through the API (CreateGroupChannel), so
 * the reader is a real member.
 *
 * `--dataset NAME` (with long-lived servers, e.g. `npm run infra:up` and a fixed
 * SWITCHBOARD_CASSANDRA_KEYSPACE): reader, channels and ids are derived from NAME and today's date,
 * and a channel whose first and last seeded ids are already stored is not seeded again, so the
 * 1M channel can be measured several times (or seeded while the machine is busy and measured later).
 *
 * Measured, per channel, by a forked load generator (a lean gRPC client over h2c: chat-kit
 * rawGetHistory, one HTTP/2 connection per call in flight; `--concurrency` calls in flight, after
 * `--warmup` calls per kind): the newest page (no anchor) and pages before a random anchor
 * (before_id = a uniformly drawn seeded id).
 * Correctness (exit 1 when any page is wrong): every page is exactly the 50 (or fewer, at the
 * start) ids immediately before the anchor, ascending, contiguous, with has_more right.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pino from "pino";
import type { ChatStore, MessageRecord } from "../services/chat/ports.js";
import { createChatStore } from "../services/chat/store.js";
import { SNOWFLAKE_EPOCH_MS } from "../services/tokenrange/snowflake.js";
import {
  authHeaders,
  cpuMeter,
  fmt,
  formatCpu,
  isLoaderChild,
  loadGenerator,
  loaderChild,
  numberFlag,
  rawGetHistory,
  rawSessionPool,
  parseArgs,
  runHeader,
  runLoader,
  runMain,
  startChatMesh,
  summarize,
  usage,
} from "./chat-kit.js";

const PAGE = 50;
/** How long the bench watches the processes' CPU with no reads, between seeding and measuring. */
const IDLE_SAMPLE_MS = 5_000;
/** Longest --quiet-db waits for the database to settle after seeding. */
const QUIET_DB_MAX_MS = 300_000;
const SEED_WORKER = 1023n;
const DAY_MS = 86_400_000;
const BUCKET_MS = 10 * DAY_MS;

/** The ids of one seeded channel: message i at startMs + floor(i * stepMs), strictly increasing. */
interface Layout {
  readonly channelId: string;
  readonly count: number;
  readonly startMs: number;
  readonly stepMs: number;
}

const msOf = (l: Layout, i: number) => l.startMs + Math.floor(i * l.stepMs);
const idOf = (l: Layout, i: number) => (BigInt(msOf(l, i) - SNOWFLAKE_EPOCH_MS) << 22n) | (SEED_WORKER << 12n) | BigInt(i % 4096);

function bucketsOf(l: Layout): number {
  const buckets = new Set<number>();
  for (let i = 0; i < l.count; i++) buckets.add(Math.floor(msOf(l, i) / BUCKET_MS));
  return buckets.size;
}

interface Input {
  readonly baseUrl: string;
  readonly jwtSecret: string;
  readonly reader: string;
  readonly channels: readonly (Layout & { readonly name: string })[];
  readonly requests: number;
  readonly concurrency: number;
  readonly warmup: number;
}

interface Row {
  readonly name: string;
  readonly kind: string;
  readonly pages: number;
  readonly bad: number;
  readonly failed: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface Output {
  readonly rows: readonly Row[];
  readonly problems: readonly string[];
}

async function load(input: Input, phase: (name: string) => void): Promise<Output> {
  // Pages read on a lean gRPC client (chat-kit rawGetHistory: node:http2, framing by hand, one
  // connection per call in flight): connect-node's client cost the loader 1.2-1.9 ms per page on
  // the two cores it shares with what it measures.
  const headers = authHeaders(input.jwtSecret, input.reader);
  const problems: string[] = [];
  const pool = rawSessionPool([input.baseUrl], (why: string) => void (problems.length < 20 && problems.push(why)));
  const rows: Row[] = [];

  /** Checks one page against the seeded layout; returns false (and notes why) when it is wrong. */
  const check = (l: Layout, before: number, res: { messages: { messageId: bigint }[]; hasMore: boolean }): boolean => {
    const from = Math.max(0, before - PAGE);
    const want = before - from;
    const got = res.messages.map((m) => m.messageId);
    let why = "";
    if (got.length !== want) why = `${got.length} messages, expected ${want}`;
    else if (res.hasMore !== from > 0) why = `has_more ${res.hasMore}, expected ${from > 0}`;
    else for (let k = 0; k < want && why === ""; k++) if (got[k] !== idOf(l, from + k)) why = `message ${k} is ${got[k]}, expected ${idOf(l, from + k)} (not contiguous / out of order)`;
    if (why !== "" && problems.length < 20) problems.push(`${l.channelId} before #${before}: ${why}`);
    return why === "";
  };

  for (const l of input.channels) {
    for (const kind of ["newest", "before random anchor"] as const) {
      const measure = async (n: number, label: string) => {
        const lat: number[] = [];
        let bad = 0;
        let failed = 0;
        let next = 0;
        await Promise.all(
          Array.from({ length: input.concurrency }, async (_, k) => {
            while (next++ < n) {
              const before = kind === "newest" ? l.count : 1 + Math.floor(Math.random() * (l.count - 1));
              const req =
                kind === "newest"
                  ? { channelId: l.channelId, pageSize: PAGE }
                  : { channelId: l.channelId, pageSize: PAGE, anchor: { case: "beforeId" as const, value: idOf(l, before) } };
              const start = performance.now();
              try {
                const res = await rawGetHistory(pool.session(k), headers, req, 10_000);
                lat.push(performance.now() - start);
                if (!check(l, before, res)) bad++;
              } catch (e) {
                failed++;
                if (problems.length < 20) problems.push(`${label}: ${e instanceof Error ? e.message : String(e)}`);
              }
            }
          }),
        );
        return { lat, bad, failed };
      };
      const label = `${l.name}, ${kind}`;
      if (input.warmup > 0) {
        const w = await measure(input.warmup, `${label} (warm-up)`);
        if (w.bad > 0 || w.failed > 0) rows.push({ name: l.name, kind: `${kind} (warm-up)`, pages: w.lat.length, bad: w.bad, failed: w.failed, ...summarize(w.lat) });
      }
      phase(label);
      const m = await measure(input.requests, label);
      phase(`end ${label}`);
      const { p50, p99, max } = summarize(m.lat);
      rows.push({ name: l.name, kind, pages: m.lat.length, bad: m.bad, failed: m.failed, p50, p99, max });
    }
  }
  pool.close();
  return { rows, problems };
}

async function seed(store: ChatStore, l: Layout, sender: string, inFlight: number, label: string): Promise<number> {
  const t0 = performance.now();
  let lastPrint = t0;
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, l.count) }, async () => {
      for (let i = next++; i < l.count; i = next++) {
        const ms = msOf(l, i);
        const message: MessageRecord = {
          id: idOf(l, i),
          channelId: l.channelId,
          senderId: sender,
          clientMessageId: `seed-${i}`,
          text: `seeded message ${i}: lorem ipsum dolor sit amet`,
          createdAt: new Date(ms),
          deleted: false,
        };
        for (let attempt = 1; ; attempt++) {
          try {
            await store.putMessage(message);
            break;
          } catch (e) {
            // A write timeout under the seeding load: putMessage is idempotent, so retry it.
            if (attempt >= 5) throw e;
          }
        }
        done++;
        const now = performance.now();
        if (now - lastPrint >= 5_000) {
          lastPrint = now;
          const rate = done / ((now - t0) / 1000);
          console.log(`seeding ${label}: ${done.toLocaleString("en")} / ${l.count.toLocaleString("en")} (${Math.round(rate)}/s, ~${Math.round((l.count - done) / rate)} s left)`);
        }
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

/** The oldest and the newest seeded ids are there: an earlier run with the same --dataset completed seeding. */
async function alreadySeeded(store: ChatStore, l: Layout): Promise<boolean> {
  const oldest = await store.history(l.channelId, { afterId: 0n }, 1);
  const newest = await store.history(l.channelId, { newest: true }, 1);
  return oldest.messages[0]?.id === idOf(l, 0) && newest.messages[0]?.id === idOf(l, l.count - 1);
}

async function main(): Promise<boolean> {
  const args = parseArgs();
  const engineKind = args.get("engine") ?? "cluster";
  const messages = numberFlag(args, "messages", 1_000_000, 2);
  const spanDays = numberFlag(args, "span-days", 30, 1);
  const sparse = numberFlag(args, "sparse", 100, 2);
  const inFlight = numberFlag(args, "in-flight", 256, 1);
  const requests = numberFlag(args, "requests", 2000, 1);
  const concurrency = numberFlag(args, "concurrency", 4, 1);
  const warmup = numberFlag(args, "warmup", 200, 0);
  const dataset = args.get("dataset");
  const quietDbPct = args.has("quiet-db") ? numberFlag(args, "quiet-db", 0, 1) : undefined;
  if (dataset !== undefined && !/^[a-z0-9-]{1,20}$/.test(dataset)) usage("--dataset: 1-20 of [a-z0-9-]");
  if (spanDays * DAY_MS < messages) usage("--span-days too short: the dense channel needs at least 1 ms per message");
  const { chatClient } = await loadGenerator(); // fail fast (exit 3) before starting any server
  const header = runHeader();
  const mesh = await startChatMesh(engineKind, "chat_history");
  try {
    console.log(`mesh ready on ${mesh.baseUrl} (${engineKind} engine)`);
    const client = chatClient(mesh.baseUrl);
    // --dataset: the same reader, channels (request_id idempotency) and ids as the last run with that
    // name on this keyspace, so a seeded keyspace can be measured again without seeding it again.
    const reader = dataset ? `bench-hist-${dataset}` : `bench-hist-${Date.now().toString(36)}`;
    const headers = authHeaders(mesh.jwtSecret, reader);
    const create = async (name: string) =>
      (await client.createGroupChannel({ name, memberUserIds: [], requestId: `${reader}-${name}` }, { headers, timeoutMs: 10_000 })).channel!.channelId;
    const now = dataset ? Math.floor(Date.now() / DAY_MS) * DAY_MS : Date.now();
    const sparseStart = SNOWFLAKE_EPOCH_MS + DAY_MS;
    const layouts = [
      { name: `dense (${messages.toLocaleString("en")} messages over ${spanDays} days)`, channelId: await create("dense"), count: messages, startMs: now - spanDays * DAY_MS, stepMs: (spanDays * DAY_MS - 60_000) / messages },
      {
        name: `sparse (${sparse} messages ${((now - DAY_MS - sparseStart) / (sparse - 1) / DAY_MS).toFixed(1)} days apart)`,
        channelId: await create("sparse"),
        count: sparse,
        startMs: sparseStart,
        stepMs: (now - DAY_MS - sparseStart) / (sparse - 1),
      },
    ];
    // A longer write timeout than the service's (2 s): 256 writes in flight queue up in Cassandra.
    const store = await createChatStore(mesh.engine, pino({ level: "warn" }), { writeTimeoutMs: 10_000 });
    const seeded: string[] = [];
    for (const l of layouts) {
      if (dataset && (await alreadySeeded(store, l))) {
        seeded.push(`${l.name}: already seeded (--dataset ${dataset}), ~${bucketsOf(l)} ten-day buckets`);
        console.log(seeded[seeded.length - 1]);
        continue;
      }
      const secs = await seed(store, l, reader, inFlight, l.name);
      seeded.push(`${l.name}: ${l.count.toLocaleString("en")} putMessage in ${secs.toFixed(1)} s (${Math.round(l.count / secs)}/s, ${inFlight} in flight), ~${bucketsOf(l)} ten-day buckets`);
      console.log(`seeded ${seeded[seeded.length - 1]}`);
    }
    // Background work the seeding left (compaction, memtable flushes, JIT): the CPU of every
    // process over a few seconds with no page read, printed beside the per-kind CPU below.
    // --quiet-db P: first wait (at most QUIET_DB_MAX_MS) until the database uses less than P % of
    // a core, i.e. reads of a settled table rather than of one still compacting a bulk load.
    let quietNote = "";
    if (quietDbPct !== undefined) {
      const t0 = Date.now();
      let db = Infinity;
      while (db >= quietDbPct && Date.now() - t0 < QUIET_DB_MAX_MS) {
        const m = cpuMeter(mesh.processes);
        await new Promise((r) => setTimeout(r, IDLE_SAMPLE_MS));
        db = m.stop().parts.find(([name]) => name === "cassandra")?.[1] ?? 0;
        console.log(`--quiet-db ${quietDbPct}: cassandra at ${Math.round(db)}% of a core after ${Math.round((Date.now() - t0) / 1000)} s`);
      }
      quietNote = `; waited ${Math.round((Date.now() - t0) / 1000)} s after seeding for the database to fall below ${quietDbPct}% of a core (${db < quietDbPct ? "it did" : "it did NOT"})`;
    }
    const idle = cpuMeter(mesh.processes);
    await new Promise((r) => setTimeout(r, IDLE_SAMPLE_MS));
    const idleCpu = idle.stop();
    const profileDir = args.get("profile");
    const profiler = profileDir === undefined ? undefined : await startProfile();
    const { result: r, cpu } = await runLoader<Output>(
      fileURLToPath(import.meta.url),
      { baseUrl: mesh.baseUrl, jwtSecret: mesh.jwtSecret, reader, channels: layouts, requests, concurrency, warmup } satisfies Input,
      mesh.processes,
    );
    if (profiler && profileDir !== undefined) console.log(`CPU profile of the page reads: ${await profiler.stop(profileDir)}`);
    console.log(`\n${header}`);
    console.log(`engine ${engineKind}; page_size ${PAGE}; ${concurrency} calls in flight; ${warmup} warm-up calls per kind${quietNote}; seeding:`);
    for (const s of seeded) console.log(`- ${s}`);
    console.log("\n| channel | page | pages | p50 ms | p99 ms | max ms | wrong pages | failed |");
    console.log("|---|---|---:|---:|---:|---:|---:|---:|");
    for (const row of r.rows) console.log(`| ${row.name} | ${row.kind} | ${row.pages} | ${fmt(row.p50)} | ${fmt(row.p99)} | ${fmt(row.max)} | ${row.bad} | ${row.failed} |`);
    console.log("\nCPU per measured kind (% of one core):");
    console.log(`- idle, ${IDLE_SAMPLE_MS / 1000} s before the first page (no reads; what the seeding left running): ${formatCpu(idleCpu)}`);
    for (const [name, split] of cpu) {
      const pages = r.rows.find((x) => `${x.name}, ${x.kind}` === name)?.pages ?? 0;
      const perSec = pages / split.secs;
      console.log(`- ${name}: ${Math.round(perSec)} pages/s; ${formatCpu(split, perSec, "page")}`);
    }
    for (const p of r.problems) console.log(`CHECK FAILED: ${p}`);
    const passed = r.problems.length === 0 && r.rows.every((x) => x.bad === 0 && x.failed === 0 && x.pages > 0);
    console.log(passed ? "CHECK ok: every page the 50 ids right before its anchor, ascending, contiguous, has_more right" : "FAIL: see CHECK FAILED above");
    const missed = r.rows.filter((x) => !(x.p99 < 20));
    console.log(`target (p99 < 20 ms each): ${missed.length === 0 ? "met" : `NOT met for ${missed.map((x) => `${x.name} ${x.kind}`).join("; ")}`}`);
    return passed;
  } finally {
    await mesh.close();
  }
}

/** A V8 CPU profile of this (the mesh's) process from now until `stop`, which writes it to a file in `dir`. */
async function startProfile(): Promise<{ stop(dir: string): Promise<string> }> {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 1000 });
  await session.post("Profiler.start");
  return {
    async stop(dir) {
      const { profile } = await session.post("Profiler.stop");
      session.disconnect();
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, `history-${process.pid}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profile));
      return file;
    },
  };
}

if (isLoaderChild()) loaderChild(load);
else runMain(main);
