/**
 * Benchmark (not a test): the click pipeline of the memory engine on one thread, without HTTP:
 * ClickEmitter.record -> ClickBatch encode -> MemoryBus durable stream -> analytics consumer ->
 * MemoryClickStatsStore. This is the work every redirect adds to the gateway's event loop when the
 * whole mesh runs in one process (`npm start`), so its cost per click is what the redirect door
 * pays on top of a bare node:http 302.
 *
 *   npx tsx bench/click-pipeline.ts [--clicks 1000000] [--links 10000] [--rounds 3]
 *
 * Prints CPU microseconds per click (process.cpuUsage over the round, so GC and the bus count)
 * and checks that every click was recorded exactly once.
 */
import pino from "pino";
import { MemoryBus } from "../platform/engines/memory/memory-bus.js";
import { MemoryClickStatsStore } from "../services/analytics/adapters/memory-click-stats.js";
import { startClickConsumer } from "../services/analytics/consumer.js";
import { ClickEmitter } from "../gateway/clicks.js";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const CLICKS = Number(args.get("clicks") ?? 1_000_000);
const LINKS = Number(args.get("links") ?? 10_000);
const ROUNDS = Number(args.get("rounds") ?? 3);
const UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const REFERER = "https://news.example.org/item?id=1";

const codeOf = (i: number) => `b${String(i).padStart(6, "0")}`;

async function main(): Promise<void> {
  const log = pino({ level: "warn" });
  const bus = new MemoryBus();
  const store = new MemoryClickStatsStore();
  const consumer = startClickConsumer({ bus, store, log });
  const emitter = new ClickEmitter({ bus, gatewayId: "bench-gw-1", log });
  const codes = Array.from({ length: LINKS }, (_, i) => codeOf(i));
  // What the door hands the emitter: the resolved link it redirected to (its stamp).
  const links = codes.map((code, i) => ({ code, ownerId: `owner-${i % 1_000}`, createdAtMs: 1_795_000_000_000 + i }));
  let sent = 0;
  console.log(`click pipeline, memory engine, one thread: ${CLICKS} clicks per round over ${LINKS} links; node ${process.version}`);
  console.log("| round | clicks/s | CPU us per click | heap MB after |\n|---|---:|---:|---:|");
  for (let round = 1; round <= ROUNDS; round++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    // Like the door under load: clicks arrive in bursts between event-loop turns.
    for (let i = 0; i < CLICKS; i++) {
      const link = links[(i * 7919) % LINKS]!;
      emitter.record(link.code, REFERER, UA, false, link);
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    sent += CLICKS;
    await emitter.drain(60_000);
    while (consumer.stats.counted + consumer.stats.duplicates < sent) await new Promise((r) => setTimeout(r, 1));
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const us = (cpu.user + cpu.system) / CLICKS;
    const heap = process.memoryUsage().heapUsed / 1e6;
    console.log(`| ${round} | ${Math.round(CLICKS / secs)} | ${us.toFixed(2)} | ${heap.toFixed(0)} |`);
  }
  let human = 0;
  for (const c of codes) human += (await store.get(c)).human;
  const ok = human === sent && consumer.stats.duplicates === 0;
  console.log(`recorded human ${human} of ${sent} sent, duplicates ${consumer.stats.duplicates} -> ${ok ? "OK" : "MISMATCH"}`);
  await consumer.close();
  await emitter.close();
  bus.close();
  if (!ok) process.exitCode = 1;
}

void main();
