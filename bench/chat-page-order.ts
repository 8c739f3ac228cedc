/**
 * `npx tsx bench/chat-page-order.ts [--rows 200000] [--pages 3000] [--concurrency 4] [--rounds 2]`
 *
 * What a history page costs Cassandra depending on the message table's clustering order: the
 * schema question behind issue 9 (c) (history p99 < 20 ms), measured on the CQL alone (no mesh).
 * `chat_messages` clusters by id ASCENDING, so the two pages a reader asks for most (the newest
 * page, and the page before an id while scrolling up) are reversed reads (`ORDER BY id DESC`),
 * while Sync and unread counts read forward (`id > cursor`). Discord clusters newest first.
 *
 * Two tables with chat_messages' columns and key, one ASC and one DESC, each seeded with the same
 * `--rows` messages in one partition (one ten-day bucket of a busy channel). Then, per round, 51-row
 * pages at random anchors, `--concurrency` in flight, in four shapes:
 *   ASC  table  `id < a ORDER BY id DESC`  (today's newest / before-anchor page: reversed)
 *   ASC  table  `id > a`                   (today's Sync / after-anchor page: forward)
 *   DESC table  `id < a`                   (before-anchor page on a newest-first table: forward)
 *   DESC table  `id > a ORDER BY id ASC`   (Sync on a newest-first table: reversed)
 * and Cassandra's CPU per page (its /proc ticks over the run). Check (exit 1): every page has 51
 * rows, contiguous ids in the order asked for. Round 1 runs right after seeding (memtables, a cold
 * JIT); later rounds show the warm cost. Round r starts with shape r (rotated), so no shape always
 * runs first; the summary gives each shape's median CPU per page over rounds 2 and later. Testkit servers on free ports, stopped at the end.
 */
import cassandra from "cassandra-driver";
import { startInfra } from "../testkit/servers/index.js";
import { Checks, provenance } from "./bench-guard.js";
import { fmt, numberFlag, parseArgs, summarize, usage } from "./chat-kit.js";
import { cpuTicks, TICKS_PER_SECOND } from "./proc-cpu.js";

const PAGE = 51;
const COLUMNS = "id, sender_id, client_message_id, text, created_at, deleted";

interface Shape {
  readonly label: string;
  readonly table: string;
  readonly cql: string;
  /** The ids a correct page holds, in order, for anchor index a. */
  readonly expect: (a: number) => number[];
}

async function main(): Promise<void> {
  const args = parseArgs();
  const rows = Math.floor(numberFlag(args, "rows", 200_000, 4 * PAGE));
  const pages = Math.floor(numberFlag(args, "pages", 3000, 1));
  const concurrency = Math.floor(numberFlag(args, "concurrency", 4, 1));
  const rounds = Math.floor(numberFlag(args, "rounds", 2, 1));
  for (const k of args.keys()) if (!["rows", "pages", "concurrency", "rounds"].includes(k)) usage(`unknown flag --${k}`);
  console.log(provenance());
  const checks = new Checks();
  console.log("starting the testkit servers (Cassandra is the one measured) ...");
  const infra = await startInfra({ log: (l) => console.log(l) });
  const c = infra.info.cassandra;
  const client = new cassandra.Client({ contactPoints: [`${c.host}:${c.port}`], localDataCenter: c.localDataCenter });
  try {
    await client.connect();
    await client.execute("CREATE KEYSPACE IF NOT EXISTS bench_page_order WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    for (const [table, order] of [["oldest_first", "ASC"], ["newest_first", "DESC"]] as const) {
      await client.execute(
        `CREATE TABLE IF NOT EXISTS bench_page_order.${table} (channel_id text, bucket int, id bigint, sender_id text, client_message_id text,
          text text, created_at timestamp, deleted boolean, PRIMARY KEY ((channel_id, bucket), id)) WITH CLUSTERING ORDER BY (id ${order})`,
      );
    }
    const idOf = (i: number) => cassandra.types.Long.fromNumber(i * 1000);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 128 }, async () => {
        for (let i = next++; i < rows; i = next++) {
          const params = ["ch", 1, idOf(i), "u", `seed-${i}`, `seeded message ${i}: lorem ipsum dolor sit amet`, new Date(), false];
          await Promise.all(
            ["oldest_first", "newest_first"].map((t) =>
              client.execute(`INSERT INTO bench_page_order.${t} (channel_id, bucket, ${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, params, { prepare: true }),
            ),
          );
        }
      }),
    );
    console.log(`seeded ${rows.toLocaleString("en")} rows into each table in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const down = (a: number) => Array.from({ length: PAGE }, (_, k) => a - 1 - k);
    const up = (a: number) => Array.from({ length: PAGE }, (_, k) => a + 1 + k);
    const where = `WHERE channel_id = 'ch' AND bucket = 1`;
    const shapes: Shape[] = [
      { label: "oldest-first table, id < a ORDER BY id DESC (newest / before page today: reversed)", table: "oldest_first", cql: `id < ? ORDER BY id DESC`, expect: down },
      { label: "oldest-first table, id > a (Sync / after page today: forward)", table: "oldest_first", cql: `id > ?`, expect: up },
      { label: "newest-first table, id < a (before page: forward)", table: "newest_first", cql: `id < ?`, expect: down },
      { label: "newest-first table, id > a ORDER BY id ASC (Sync: reversed)", table: "newest_first", cql: `id > ? ORDER BY id ASC`, expect: up },
    ];
    const results: string[] = [];
    const warm = new Map<string, number[]>();
    for (let round = 1; round <= rounds; round++) {
      // Rotated: each shape leads a round once in every four (the first run after seeding pays the JIT).
      for (const s of shapes.map((_, i) => shapes[(i + round - 1) % shapes.length]!)) {
        const cql = `SELECT ${COLUMNS} FROM bench_page_order.${s.table} ${where} AND ${s.cql} LIMIT ${PAGE}`;
        const lat: number[] = [];
        let wrong = 0;
        let started = 0;
        const cpu0 = cpuTicks(infra.cassandra.pid);
        const r0 = performance.now();
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (started++ < pages) {
              const a = PAGE + 1 + Math.floor(Math.random() * (rows - 2 * PAGE - 2));
              const q0 = performance.now();
              const res = await client.execute(cql, [idOf(a)], { prepare: true });
              lat.push(performance.now() - q0);
              const got = res.rows.map((r) => Number(String(r["id"])) / 1000);
              const want = s.expect(a);
              if (got.length !== want.length || got.some((v, k) => v !== want[k])) wrong++;
            }
          }),
        );
        const secs = (performance.now() - r0) / 1000;
        const cpuMs = ((cpuTicks(infra.cassandra.pid) - cpu0) / TICKS_PER_SECOND / pages) * 1000;
        const { p50, p99 } = summarize(lat);
        checks.check(wrong === 0, `round ${round}, ${s.label}: ${pages - wrong} of ${pages} pages exactly the 51 ids asked for`);
        results.push(`| ${round} | ${s.label} | ${Math.round(pages / secs)} | ${fmt(p50)} | ${fmt(p99)} | ${cpuMs.toFixed(3)} |`);
        if (round > 1) (warm.get(s.label) ?? warm.set(s.label, []).get(s.label)!).push(cpuMs);
      }
    }
    console.log(`\n${rows.toLocaleString("en")} rows per table, pages of ${PAGE}, ${pages} pages per run, ${concurrency} in flight`);
    console.log("| round | page | pages/s | p50 ms | p99 ms | Cassandra CPU ms per page |");
    console.log("|---|---|---:|---:|---:|---:|");
    for (const r of results) console.log(r);
    if (warm.size > 0) {
      console.log("\nmedian Cassandra CPU ms per page, rounds 2 and later:");
      for (const [label, xs] of warm) console.log(`- ${label}: ${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(3)}`);
    }
  } finally {
    await client.shutdown();
    await infra.stop();
  }
  checks.exit();
}

await main();
