/**
 * Token-range benchmark (run by hand, not a test):
 *   npx tsx bench/tokenrange.ts [--ids 20000000]
 * Prints ids/s of the leasing client in-process (direct source) on the memory coordinator and on
 * a real ZooKeeper (testkit startZooKeeper()), coordinator round trips per 1,000 ids, and codes/s
 * of the short-code permutation.
 */
import os from "node:os";
import { MemoryCoordinator } from "../platform/engines/memory/memory-coordinator.js";
import { ZooKeeperCoordinator } from "../platform/engines/cluster/zookeeper-coordinator.js";
import type { Coordinator } from "../platform/ports/coordinator.js";
import { startZooKeeper } from "../testkit/servers/index.js";
import { CodePermutation } from "../services/tokenrange/code-permutation.js";
import { createLeaseClient } from "../services/tokenrange/lease-client.js";
import { directRangeSource } from "../services/tokenrange/range-source.js";
import { SnowflakeGenerator } from "../services/tokenrange/snowflake.js";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg("ids", 20_000_000);

async function leaseRun(label: string, coordinator: Coordinator, yieldEvery = 0): Promise<void> {
  const rt = { get: 0, create: 0, cas: 0 };
  let sourceCalls = 0;
  const inner = directRangeSource(coordinator, { root: `/bench-${Date.now()}`, onRoundTrip: (op) => rt[op]++ });
  const source = { acquire: (ns: string, size: number) => (sourceCalls++, inner.acquire(ns, size)) };
  const ids = createLeaseClient({ namespace: "links", source });
  await ids.ready();
  let waitsAsync = 0;
  let sink = 0n;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    let v = ids.next();
    if (v === undefined) {
      waitsAsync++;
      v = await ids.nextAsync();
    }
    sink ^= v;
    if (yieldEvery && i % yieldEvery === 0) await new Promise((r) => setImmediate(r));
  }
  const ms = performance.now() - t0;
  const s = ids.stats();
  await ids.close();
  const trips = rt.get + rt.create + rt.cas;
  console.log(
    `${label}${yieldEvery ? ` (yield to the event loop every ${yieldEvery.toLocaleString()} ids)` : " (tight sync loop)"}: ${N.toLocaleString()} ids in ${ms.toFixed(0)} ms = ${Math.round((N / ms) * 1000).toLocaleString()} ids/s; ` +
      `ranges ${s.rangesAcquired} (source calls ${sourceCalls}, final size ${s.nextSize.toLocaleString()}), ` +
      `coordinator round trips ${trips} (get ${rt.get}, create ${rt.create}, CAS ${rt.cas}) = ${((trips / N) * 1000).toFixed(4)} per 1,000 ids; ` +
      `empty-buffer waits ${waitsAsync} (sink ${sink & 1n})`,
  );
}

console.log(`bench/tokenrange: node ${process.version}, ${os.cpus().length}x ${os.cpus()[0]?.model ?? "?"}, ${new Date().toISOString()}`);

// Permutation.
{
  const p = new CodePermutation("bench-key-0123456789abcdef");
  const n = 5_000_000;
  let len = 0;
  for (let i = 0; i < 200_000; i++) len += p.encode(i).length;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) len += p.encode(i * 7919).length;
  const ms = performance.now() - t0;
  const t1 = performance.now();
  for (let i = 0; i < n; i++) len += p.encode(BigInt(i)).length;
  const ms2 = performance.now() - t1;
  console.log(
    `code permutation: ${Math.round((n / ms) * 1000).toLocaleString()} codes/s (number input), ` +
      `${Math.round((n / ms2) * 1000).toLocaleString()} codes/s (bigint input) (len ${len})`,
  );
}

// Snowflake.
{
  const g = new SnowflakeGenerator({ worker: 1 });
  const n = 2_000_000;
  let x = 0n;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) x ^= g.next();
  const ms = performance.now() - t0;
  console.log(`snowflake: ${Math.round((n / ms) * 1000).toLocaleString()} ids/s (cap 4,096,000/s per worker) (${x & 1n})`);
}

await leaseRun("lease client, memory coordinator", new MemoryCoordinator());
await leaseRun("lease client, memory coordinator", new MemoryCoordinator(), 10_000);

const zk = await startZooKeeper();
try {
  const c = new ZooKeeperCoordinator({ connectString: zk.connectString, sessionTimeoutMs: 10_000 });
  await c.whenConnected(20_000);
  await leaseRun(`lease client, ZooKeeper ${zk.version}`, c);
  await leaseRun(`lease client, ZooKeeper ${zk.version}`, c, 10_000);
  // Raw allocator round trip latency.
  const alloc = directRangeSource(c, { root: `/bench-rt-${Date.now()}` });
  const k = 300;
  const t0 = performance.now();
  for (let i = 0; i < k; i++) await alloc.acquire("links", 1000);
  console.log(`AcquireRange on ZooKeeper (direct, uncontended): ${((performance.now() - t0) / k).toFixed(2)} ms per range`);
  await c.close();
} finally {
  await zk.stop();
}
