/**
 * Acceptance: 8 lessees in separate processes lease ids from one ZooKeeper counter while some
 * are SIGKILLed (and replaced) and their ZooKeeper connections are cut (short cuts: reconnect on
 * the same session; long cuts: session expiry). The union of all ids served has no duplicate.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, expect, it } from "vitest";
import { ZooKeeperCoordinator } from "../../platform/engines/cluster/zookeeper-coordinator.js";
import { TcpProxy } from "../../platform/engines/cluster/testing/tcp-proxy.js";
import { infra } from "../../testkit/keyspace.js";
import { freePort } from "../../testkit/servers/index.js";
import { RangeAllocator } from "./domain/range-allocator.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(path.join(tmpdir(), "tokenrange-chaos-"));
const children = new Set<ChildProcess>();
const proxies: TcpProxy[] = [];
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  for (const p of proxies) await p.down();
  rmSync(dir, { recursive: true, force: true });
});

interface Lessee {
  child: ChildProcess;
  out: () => string;
  exited: Promise<void>;
}

function spawnLessee(connect: string, root: string, n: number): Lessee {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "services/tokenrange/testing/lessee.ts", connect, "links", path.join(dir, `lessee-${n}.txt`), root, "40"],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SWITCHBOARD_LOG_LEVEL: "silent" } },
  );
  children.add(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => { children.delete(child); r(); }));
  return { child, out: () => out, exited };
}

it("8 lessee processes, SIGKILLs and ZooKeeper connection cuts: no id is ever served twice", async () => {
  const zk = infra().zookeeper;
  const root = `/chaos-${Date.now()}`;
  // Two proxies: lessees 0-3 behind A, 4-7 behind B (cut at different times).
  for (let i = 0; i < 2; i++) {
    const p = new TcpProxy(await freePort(), { host: zk.host, port: zk.port });
    await p.up();
    proxies.push(p);
  }
  const [pa, pb] = proxies as [TcpProxy, TcpProxy];
  const connectOf = (i: number) => `127.0.0.1:${(i < 4 ? pa : pb).port}`;
  let n = 0;
  const live: Lessee[] = [];
  for (let i = 0; i < 8; i++) live.push(spawnLessee(connectOf(i), root, n++));
  const deadline = Date.now() + 20_000;
  while (live.some((l) => !l.out().includes("ready")) && Date.now() < deadline) await sleep(100);
  expect(live.every((l) => l.out().includes("ready"))).toBe(true);

  let killed = 0;
  await sleep(2_000);
  // SIGKILL two lessees, replace them.
  for (const idx of [1, 5]) {
    live[idx]!.child.kill("SIGKILL");
    await live[idx]!.exited;
    killed++;
    live[idx] = spawnLessee(connectOf(idx), root, n++);
  }
  await sleep(1_500);
  // Short cut on A: same session resumes; writes in flight have unknown outcome.
  await pa.down();
  await sleep(700);
  await pa.up();
  await sleep(1_500);
  // Long cut on B: longer than the 3 s session timeout -> session expiry.
  await pb.down();
  await sleep(4_500);
  await pb.up();
  // Kill one more mid-recovery.
  live[2]!.child.kill("SIGKILL");
  await live[2]!.exited;
  killed++;
  live[2] = spawnLessee(connectOf(2), root, n++);
  await sleep(3_000);
  // Short cut on both.
  await Promise.all([pa.down(), pb.down()]);
  await sleep(500);
  await Promise.all([pa.up(), pb.up()]);
  await sleep(3_000);

  // Graceful stop of the rest.
  const summaries: string[] = [];
  await Promise.all(
    live.map(async (l) => {
      l.child.kill("SIGTERM");
      const t = setTimeout(() => l.child.kill("SIGKILL"), 8_000);
      await l.exited;
      clearTimeout(t);
      const m = /skipped (\d+).*/.exec(l.out());
      summaries.push(m ? m[0] : "killed (no summary)");
    }),
  );

  // Union of all ids served.
  const files = readdirSync(dir).filter((f) => f.endsWith(".txt"));
  let total = 0;
  const chunks: Float64Array[] = [];
  for (const f of files) {
    const lines = readFileSync(path.join(dir, f), "utf8").split("\n").filter(Boolean);
    const arr = new Float64Array(lines.length);
    lines.forEach((s, i) => (arr[i] = Number(s)));
    chunks.push(arr);
    total += arr.length;
  }
  const all = new Float64Array(total);
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  all.sort();
  let dups = 0;
  for (let i = 1; i < all.length; i++) if (all[i] === all[i - 1]) dups++;

  const admin = new ZooKeeperCoordinator({ connectString: zk.connectString, sessionTimeoutMs: 4_000 });
  await admin.whenConnected(10_000);
  const ns = await new RangeAllocator(admin, { root }).getNamespace("links");
  await admin.close();
  const leased = Number(ns.next);
  const skipped = leased - total;
  console.log(
    `tokenrange chaos: ${n} lessee processes (${killed} SIGKILLed), ${total.toLocaleString()} ids served, ` +
      `${leased.toLocaleString()} leased (counter version ${ns.version}), ${skipped.toLocaleString()} skipped ` +
      `(${((skipped / leased) * 100).toFixed(2)}%: killed/closed lessees' unserved buffers, lost-reply ranges), duplicates ${dups}\n  ` +
      summaries.join("\n  "),
  );
  expect(total).toBeGreaterThan(10_000);
  expect(dups).toBe(0);
  expect(all[all.length - 1]!).toBeLessThan(leased);
}, 60_000);
