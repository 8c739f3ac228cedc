/**
 * Chaos-test child process: leases ids of a namespace through the direct ZooKeeper source and
 * appends every id it serves (decimal, one per line) to a file, synchronously, once per range
 * (and at exit). Usage:
 *   node --import tsx services/tokenrange/testing/lessee.ts <connectString> <namespace> <outFile> <root> [idsPerTick]
 * On SIGTERM: flushes, closes the lease client, prints "skipped <n>" and exits 0.
 */
import { appendFileSync } from "node:fs";
import { ZooKeeperCoordinator } from "../../../platform/engines/cluster/zookeeper-coordinator.js";
import { createLeaseClient } from "../lease-client.js";
import { directRangeSource } from "../range-source.js";

const [connectString, namespace, outFile, root, perTickArg] = process.argv.slice(2);
if (!connectString || !namespace || !outFile || !root) {
  console.error("usage: lessee.ts <connectString> <namespace> <outFile> <root> [idsPerTick]");
  process.exit(2);
}
const perTick = Number(perTickArg ?? 50);
const zk = new ZooKeeperCoordinator({ connectString, sessionTimeoutMs: 3_000, operationTimeoutMs: 2_000 });
let buf: string[] = [];
const flush = () => {
  if (buf.length) appendFileSync(outFile, buf.join("\n") + "\n");
  buf = [];
};
const ids = createLeaseClient({
  namespace,
  source: directRangeSource(zk, { root, unavailableBudgetMs: 500 }),
  initialSize: 20,
  maxSize: 400,
  prefetchAt: 0.5,
  targetRangeMs: 200,
  retryMinMs: 50,
  retryMaxMs: 500,
  onRange: flush,
});
let stopping = false;
let errors = 0;
const tick = async () => {
  if (stopping) return;
  for (let i = 0; i < perTick; i++) {
    try {
      buf.push(String(await ids.nextAsync()));
    } catch {
      errors++;
      break;
    }
  }
  setTimeout(() => void tick(), 2);
};
process.on("SIGTERM", () => {
  stopping = true;
  void (async () => {
    flush();
    const { skipped } = await ids.close();
    flush();
    const s = ids.stats();
    console.log(`skipped ${skipped} served ${s.served} ranges ${s.rangesAcquired} errors ${errors}`);
    await zk.close();
    process.exit(0);
  })();
});
await zk.whenConnected(20_000);
console.log("ready");
void tick();
