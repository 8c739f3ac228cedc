/**
 * `npx tsx bench/link-create.ts --through gateway`: link creation through the front door, side by
 * side with creation straight into the shortener, on the cluster engine in a split deployment
 * (issue 11 item 5).
 *
 * Topology: testkit Cassandra, ZooKeeper, NATS, Redis; `switchboard tokenrange`, `switchboard
 * shortener` and `switchboard gateway` as separate processes (as deployed), a fresh keyspace.
 * Gateway auth on (API keys minted into Cassandra for the run, one per h2load process), rate
 * limits on but raised to 1,000,000 per minute per IP and per identity (so every create still
 * pays its two Redis INCRs). Paths, each driven by h2load (C, ~0.02 ms CPU per request):
 *   straight  gRPC CreateLink into the shortener's port (identity assertion signed with the mesh secret)
 *   connect   Connect unary CreateLink (application/proto) to the gateway over h2c, x-api-key
 *   rest      POST /api/v1/shorten JSON to the gateway over HTTP/1.1 (h2load --h1, one request in
 *             flight per connection, so --concurrency connections), x-api-key
 *   grpc      (only when asked with --paths) gRPC CreateLink to the gateway over h2c, x-api-key
 * Rounds run the paths in rotated order (round 2 starts with the second path, ...) after one
 * warm-up per path, all on the same processes, so the ratios compare like with like.
 *
 * Checks (exit 1 after the table when one fails): per run, h2load counted every request answered
 * with the path's success status (200, REST 201); the shortener's
 * grpc_server_handled_total{CreateLink} grew by exactly the requests sent, all OK; through the
 * gateway its gateway_http_requests_total grew by exactly the requests sent, all with the success
 * status. At the end: each h2load process had its own owner, and Cassandra's links_by_owner holds
 * exactly as many links per owner as that owner was sent creates for; a sample of the created
 * codes of every path is followed through the gateway's redirect door (302 to the long URL).
 *
 * Where the time goes, per run: the mean time a create spent inside the gateway (its
 * gateway_http_request_duration_seconds) and inside the shortener (grpc_server_handling_seconds
 * of CreateLink), and each Node process's event-loop delay p99 / max over the run (prom-client's
 * nodejs_eventloop_lag_*, whose histogram each scrape resets): a loop that waits for a CPU (2
 * cores shared by every process here) shows there, and every await of a create pays it.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { CreateLinkRequestSchema, ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { CassandraConnector } from "../platform/engines/cluster/cassandra.js";
import { CassandraApiKeyStore } from "../services/apikeys/adapters/cassandra-api-key-store.js";
import { issueApiKey } from "../services/apikeys/service.js";
import { assertionHeaders, TEST_MESH_SECRET } from "../testkit/mesh-identity.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../testkit/processes.js";
import { infraEnv, startInfra } from "../testkit/servers/index.js";
import { Checks, EXIT_MISSING_TOOL, provenance } from "./bench-guard.js";
import { grpcFrame, H2LOAD_INSTALL_HINT, hasH2load, percentile, startH2load, type H2loadResult } from "./h2load.js";
import { childrenTicks, cpuTicks, machineTicks, TICKS_PER_SECOND } from "./proc-cpu.js";

type PathName = "straight" | "connect" | "rest" | "grpc";
const PATHS: readonly PathName[] = ["straight", "connect", "rest", "grpc"];
const CREATE_LINK = `/${ShortenerService.typeName}/${ShortenerService.method.createLink.name}`;
/** The raised limits: config's maximum (gateway/auth/config.ts), far above what one box creates. */
const RAISED_RATE_LIMIT = "1000000";

interface Options {
  readonly requests: number;
  readonly warmup: number;
  readonly concurrency: number;
  readonly clients: number;
  readonly rounds: number;
  readonly paths: readonly PathName[];
  /** NODE_OPTIONS --cpu-prof for these processes (written to --prof-dir on their clean exit). */
  readonly profile: readonly string[];
  readonly profDir: string;
}

interface Target {
  readonly url: string;
  readonly contentType: string;
  readonly h1: boolean;
  readonly okStatus: number;
  readonly bodyFile: string;
  readonly longUrl: string;
  /** Headers of h2load process i (its own owner), and that owner's id. */
  readonly owner: (i: number) => { id: string; headers: [string, string][] };
}

interface Row {
  readonly path: PathName;
  readonly round: number;
  readonly creates: number;
  readonly p50: number;
  readonly p99: number;
  readonly ok: number;
  readonly sent: number;
  readonly cpu: Map<string, number>;
  readonly machine: number;
  /** Mean time a create spent inside the gateway (request to answer) and inside the shortener. */
  readonly inGatewayMs: number;
  readonly inShortenerMs: number;
  /** Event-loop delay p99 and max over the run (prom-client's nodejs_eventloop_lag_*, reset by every scrape), ms. */
  readonly lag: Map<string, { p99: number; max: number }>;
}

function parseOptions(args: Map<string, string>): Options {
  const num = (k: string, d: number) => Number(args.get(k) ?? d);
  const paths = (args.get("paths") ?? "straight,connect,rest").split(",") as PathName[];
  for (const p of paths) if (!PATHS.includes(p)) usage(`--paths: ${p} is not one of ${PATHS.join(", ")}`);
  const o: Options = {
    requests: num("requests", 20_000),
    warmup: num("warmup", 10_000),
    concurrency: num("concurrency", 64),
    clients: num("clients", 4),
    rounds: num("rounds", 1),
    paths,
    profile: (args.get("profile") ?? "").split(",").filter(Boolean),
    profDir: args.get("prof-dir") ?? path.resolve("prof"),
  };
  if (!Number.isInteger(o.concurrency / o.clients)) usage(`--concurrency (${o.concurrency}) must be a multiple of --clients (${o.clients})`);
  if (Math.min(o.warmup || o.requests, o.requests) < o.concurrency) usage(`--requests and --warmup must be >= --concurrency (${o.concurrency})`);
  for (const p of o.profile) if (!["gateway", "shortener"].includes(p)) usage(`--profile: ${p} is not gateway or shortener`);
  return o;
}

function usage(msg: string): never {
  console.error(msg);
  process.exit(1);
}

/** Prometheus text samples of one metric: labels as one string (`a="x",b="y"`) and value. */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const end = line.lastIndexOf("}");
    out.set(line.slice(name.length + 1, end), Number(line.slice(end + 2)));
  }
  return out;
}
function delta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of after) if (v - (before.get(k) ?? 0) > 0) d.set(k, v - (before.get(k) ?? 0));
  return d;
}
/** A histogram's sum and count in one scrape, over the series `keep` accepts. */
function histogramTotals(text: string, name: string, keep: (labels: string) => boolean): { sum: number; count: number } {
  const total = (m: Map<string, number>) => [...m].reduce((a, [k, v]) => (keep(k) ? a + v : a), 0);
  return { sum: total(samples(text, `${name}_sum`)), count: total(samples(text, `${name}_count`)) };
}
/** The value of an unlabelled or singly-labelled gauge (the first sample named exactly `name`). */
function gaugeOf(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(" ") + 1));
}
/** Mean in ms of the observations between two scrapes' totals. */
const meanMs = (a: { sum: number; count: number }, b: { sum: number; count: number }) =>
  b.count > a.count ? ((b.sum - a.sum) / (b.count - a.count)) * 1000 : NaN;
const label = (labels: string, name: string) => new RegExp(`${name}="([^"]*)"`).exec(labels)?.[1];

const lagText = (r: Row) =>
  [...r.lag].map(([name, l]) => `${name} ${l.p99.toFixed(0)} / ${l.max.toFixed(0)}`).join("; ");

export async function mainThroughGateway(args: Map<string, string>): Promise<void> {
  const o = parseOptions(args);
  if (!(await hasH2load())) {
    console.error(H2LOAD_INSTALL_HINT);
    process.exit(EXIT_MISSING_TOOL);
  }
  console.log(provenance());
  const checks = new Checks();
  console.log("starting Cassandra, ZooKeeper, NATS and Redis (testkit startInfra) ...");
  const infra = await startInfra({ log: (l) => console.log(l) });
  const dir = mkdtempSync(path.join(tmpdir(), "bench-link-create-gw-"));
  const procs: MeshProcess[] = [];
  const keyspace = `bench_gw_${Date.now().toString(36)}`;
  let cql: CassandraConnector | undefined;
  try {
    const [tokenrangePort, shortenerPort, shortenerMetrics, gatewayPort, gatewayMetrics] = [
      await freePort(), await freePort(), await freePort(), await freePort(), await freePort(),
    ];
    const base = `http://127.0.0.1:${gatewayPort}`;
    const closed = async () => `127.0.0.1:${await freePort()}`;
    const env: Record<string, string> = {
      ...infraEnv(infra.info),
      SWITCHBOARD_ENGINE: "cluster",
      SWITCHBOARD_LOG_LEVEL: "warn",
      SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
      SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
      SWITCHBOARD_JWT_HS256_SECRET: "bench-link-create-gw-secret-0123456789abcdef",
      SWITCHBOARD_CODE_KEY: "bench-link-create-key-0123456789",
      // The straight path signs its callers' assertions with this secret, as the gateway does.
      SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
      SWITCHBOARD_PUBLIC_BASE_URL: base,
      SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: RAISED_RATE_LIMIT,
      SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: RAISED_RATE_LIMIT,
      SWITCHBOARD_UPSTREAM_TOKENRANGE: `127.0.0.1:${tokenrangePort}`,
      SWITCHBOARD_UPSTREAM_SHORTENER: `127.0.0.1:${shortenerPort}`,
      // Not part of this run: closed ports rather than whatever listens on the default ones.
      SWITCHBOARD_UPSTREAM_REDIRECT: await closed(),
      SWITCHBOARD_UPSTREAM_CHAT: await closed(),
      SWITCHBOARD_UPSTREAM_PRESENCE: await closed(),
      SWITCHBOARD_UPSTREAM_PUSH: await closed(),
    };
    const prof = (role: string): string[] =>
      // A directory per role and node's own file names: tsx's loader thread writes a profile too
      // (pid and thread id in the name), one fixed name would let it overwrite the main thread's.
      o.profile.includes(role) ? ["--cpu-prof", `--cpu-prof-dir=${path.join(o.profDir, role)}`] : [];
    const spawn = (role: string, extra: Record<string, string>) => {
      const p = spawnSwitchboard([role], { ...env, ...extra }, prof(role));
      procs.push(p);
      return p;
    };
    const tokenrange = spawn("tokenrange", { SWITCHBOARD_GRPC_PORT: String(tokenrangePort) });
    const shortener = spawn("shortener", { SWITCHBOARD_GRPC_PORT: String(shortenerPort), SWITCHBOARD_METRICS_PORT: String(shortenerMetrics) });
    const gateway = spawn("gateway", { SWITCHBOARD_GATEWAY_PORT: String(gatewayPort), SWITCHBOARD_METRICS_PORT: String(gatewayMetrics) });
    const up = await waitFor(
      "the gateway ready with the shortener serving",
      async () => {
        // Returned, not thrown: waitFor retries on a throw until its timeout.
        const dead = procs.find((p) => p.child.exitCode !== null);
        if (dead) return dead;
        const res = await fetch(`${base}/readyz`).catch(() => undefined);
        if (res?.status !== 200) return undefined;
        const body = (await res.json()) as { checks: { name: string; ok: boolean }[] };
        return body.checks.some((c) => c.name === "shortener" && c.ok) ? true : undefined;
      },
      180_000,
    );
    if (up !== true) throw new Error(`a mesh process exited early:\n${up.output().slice(-3000)}`);
    console.log(`mesh up: gateway ${base}, shortener 127.0.0.1:${shortenerPort}, keyspace ${keyspace}`);

    cql = new CassandraConnector({
      contactPoints: [{ host: infra.info.cassandra.host, port: infra.info.cassandra.port }],
      localDataCenter: infra.info.cassandra.localDataCenter,
      keyspace,
      replicationFactor: 1,
      flavor: "cassandra",
    });
    await cql.whenConnected();
    const keys = new CassandraApiKeyStore(cql);

    // One owner per (path, h2load process): its links are counted back in links_by_owner.
    const owners = o.clients;
    const ownerIds = (p: PathName) => Array.from({ length: owners }, (_, i) => `bench-${p}-${i}`);
    const apiKeys = new Map<string, string>();
    for (const p of o.paths.filter((p) => p !== "straight")) {
      for (const id of ownerIds(p)) apiKeys.set(id, (await issueApiKey(keys, id, "link-create bench")).key);
    }
    const file = (name: string, body: Uint8Array | string) => {
      const f = path.join(dir, name);
      writeFileSync(f, body);
      return f;
    };
    const proto = (longUrl: string) => toBinary(CreateLinkRequestSchema, create(CreateLinkRequestSchema, { longUrl }));
    const keyed = (p: PathName) => (i: number) => {
      const id = ownerIds(p)[i]!;
      return { id, headers: [["x-api-key", apiKeys.get(id)!]] as [string, string][] };
    };
    const targets: Record<PathName, Target> = {
      straight: {
        url: `http://127.0.0.1:${shortenerPort}${CREATE_LINK}`,
        contentType: "application/grpc",
        h1: false,
        okStatus: 200,
        longUrl: "https://example.com/bench/straight",
        bodyFile: file("straight.bin", grpcFrame(proto("https://example.com/bench/straight"))),
        owner: (i) => {
          const id = ownerIds("straight")[i]!;
          // Valid 60 s: signed again for every h2load process (each runs for well under that).
          return { id, headers: [...assertionHeaders(id, CREATE_LINK)] };
        },
      },
      connect: {
        url: `${base}${CREATE_LINK}`,
        contentType: "application/proto",
        h1: false,
        okStatus: 200,
        longUrl: "https://example.com/bench/connect",
        bodyFile: file("connect.bin", proto("https://example.com/bench/connect")),
        owner: (i) => {
          const k = keyed("connect")(i);
          return { id: k.id, headers: [...k.headers, ["connect-protocol-version", "1"]] };
        },
      },
      rest: {
        url: `${base}/api/v1/shorten`,
        contentType: "application/json",
        h1: true,
        okStatus: 201,
        longUrl: "https://example.com/bench/rest",
        bodyFile: file("rest.json", JSON.stringify({ long_url: "https://example.com/bench/rest" })),
        owner: keyed("rest"),
      },
      grpc: {
        url: `${base}${CREATE_LINK}`,
        contentType: "application/grpc",
        h1: false,
        okStatus: 200,
        longUrl: "https://example.com/bench/grpc",
        bodyFile: file("grpc.bin", grpcFrame(proto("https://example.com/bench/grpc"))),
        owner: keyed("grpc"),
      },
    };
    const sentTo = new Map<string, number>();

    /**
     * One /metrics scrape of each server. A scrape also resets prom-client's event-loop delay
     * histogram, so the lag read from the scrape right after a run covers that run.
     */
    const scrape = async () => {
      const text = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return { gateway: await text(gatewayMetrics), shortener: await text(shortenerMetrics) };
    };
    const timeInGateway = (text: string) =>
      histogramTotals(text, "gateway_http_request_duration_seconds", (l) => !/route="(metrics|healthz|readyz)"/.test(l));
    const timeInShortener = (text: string) => histogramTotals(text, "grpc_server_handling_seconds", (l) => label(l, "grpc_method") === "CreateLink");
    const lagOf = (text: string) => ({
      p99: gaugeOf(text, "nodejs_eventloop_lag_p99_seconds") * 1000,
      max: gaugeOf(text, "nodejs_eventloop_lag_max_seconds") * 1000,
    });
    const watched: [string, number][] = [
      ["gateway", gateway.child.pid!],
      ["shortener", shortener.child.pid!],
      ["tokenrange", tokenrange.child.pid!],
      ["cassandra", infra.cassandra.pid],
      ["redis", infra.redis.pid],
      ["zookeeper", infra.zookeeper.pid],
      ["nats", infra.nats.pid],
    ];

    const runOnce = async (p: PathName, n: number, tag: string): Promise<{ secs: number; results: H2loadResult[]; cpu: Map<string, number>; machine: number }> => {
      const t = targets[p];
      // h2 paths: --clients connections with concurrency/clients streams each; HTTP/1.1 has one
      // request in flight per connection, so it gets --concurrency connections.
      const conns = t.h1 ? o.concurrency : o.clients;
      const perConn = t.h1 ? 1 : o.concurrency / o.clients;
      const connsOf = (i: number) => Math.floor((conns * (i + 1)) / owners) - Math.floor((conns * i) / owners);
      const reqsOf = (i: number) => Math.floor((n * (i + 1)) / owners) - Math.floor((n * i) / owners);
      const cpu0 = watched.map(([, pid]) => cpuTicks(pid));
      const kids0 = childrenTicks(process.pid);
      const m0 = machineTicks();
      const t0 = performance.now();
      const runs = Array.from({ length: owners }, (_, i) => {
        const owner = t.owner(i);
        sentTo.set(owner.id, (sentTo.get(owner.id) ?? 0) + reqsOf(i));
        return startH2load({
          url: t.url,
          requests: reqsOf(i),
          clients: connsOf(i),
          streams: perConn,
          bodyFile: t.bodyFile,
          contentType: t.contentType,
          h1: t.h1,
          okStatus: t.okStatus,
          headers: owner.headers,
          logFile: path.join(dir, `${tag}-${i}.log`),
        }).done;
      });
      const results = await Promise.all(runs);
      const secs = (performance.now() - t0) / 1000;
      const m1 = machineTicks();
      const cpu = new Map<string, number>();
      watched.forEach(([name, pid], i) => cpu.set(name, ((cpuTicks(pid) - cpu0[i]!) / TICKS_PER_SECOND / secs) * 100));
      cpu.set("h2load", ((childrenTicks(process.pid) - kids0) / TICKS_PER_SECOND / secs) * 100);
      const machine = ((m1.busy - m0.busy) / (m1.total - m0.total)) * availableParallelism() * 100;
      return { secs, results, cpu, machine };
    };

    /** One run of one path with its load-generator and server-side checks. */
    const measure = async (p: PathName, n: number, round: number, what: string): Promise<Row> => {
      const t = targets[p];
      const before = await scrape();
      const r = await runOnce(p, n, `${p}-${round}-${randomUUID().slice(0, 4)}`);
      const after = await scrape();
      const lag = new Map([
        ["gateway", lagOf(after.gateway)],
        ["shortener", lagOf(after.shortener)],
      ]);
      const s0 = samples(before.shortener, "grpc_server_handled_total");
      const s1 = samples(after.shortener, "grpc_server_handled_total");
      const g0 = samples(before.gateway, "gateway_http_requests_total");
      const g1 = samples(after.gateway, "gateway_http_requests_total");
      const lat = r.results.flatMap((x) => x.durationsMs).sort((a, b) => a - b);
      const total = r.results.reduce((a, x) => a + x.total, 0);
      const succeeded = r.results.reduce((a, x) => a + x.succeeded, 0);
      const wrong = r.results.reduce((a, x) => a + x.non200, 0);
      const ok = succeeded - wrong;
      checks.check(
        total === n && succeeded === n && wrong === 0,
        `${what} ${p}: h2load sent ${total} of ${n}, ${succeeded} succeeded, ${wrong} without HTTP ${t.okStatus}`,
      );
      const created = delta(s0, s1);
      let createdOk = 0;
      let createdOther = 0;
      for (const [labels, v] of created) {
        if (label(labels, "grpc_method") !== "CreateLink") continue;
        if (label(labels, "grpc_code") === "OK") createdOk += v;
        else createdOther += v;
      }
      checks.check(createdOk === n && createdOther === 0, `${what} ${p}: shortener CreateLink OK ${createdOk}, non-OK ${createdOther}; sent ${n}`);
      if (p !== "straight") {
        let answered = 0;
        const other: string[] = [];
        for (const [labels, v] of delta(g0, g1)) {
          if (label(labels, "status") === String(t.okStatus)) answered += v;
          else other.push(`${labels} ${v}`);
        }
        checks.check(
          answered === n && other.length === 0,
          `${what} ${p}: gateway_http_requests_total with status ${t.okStatus}: ${answered} of ${n}${other.length ? `; others: ${other.join("; ")}` : ""}`,
        );
      }
      return { path: p, round, creates: ok / r.secs, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), ok, sent: n, cpu: r.cpu, machine: r.machine,
        inGatewayMs: meanMs(timeInGateway(before.gateway), timeInGateway(after.gateway)),
        inShortenerMs: meanMs(timeInShortener(before.shortener), timeInShortener(after.shortener)), lag };
    };

    if (o.warmup > 0) {
      for (const p of o.paths) {
        const w = await measure(p, o.warmup, 0, "warm-up");
        console.log(`warm-up ${p}: ${o.warmup} creates, ${Math.round(w.creates)}/s, p99 ${w.p99.toFixed(1)} ms`);
      }
    }
    const rows: Row[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      const order = o.paths.map((_, i) => o.paths[(i + round - 1) % o.paths.length]!);
      for (const p of order) {
        const row = await measure(p, o.requests, round, `round ${round}`);
        rows.push(row);
        console.log(
          `round ${round} ${p}: ${Math.round(row.creates)} creates/s, p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms, ` +
            `mean ms inside gateway ${row.inGatewayMs.toFixed(2)}, inside shortener ${row.inShortenerMs.toFixed(2)}, ` +
            `event-loop delay p99 / max ms: ${lagText(row)}`,
        );
      }
    }

    // Every create reached Cassandra: count each owner's listing rows.
    for (const [owner, sent] of sentTo) {
      const rows = await cql.execute("SELECT COUNT(*) AS n FROM links_by_owner WHERE owner_id = ?", [owner]);
      const stored = Number(String(rows[0]?.["n"]));
      checks.check(stored === sent, `Cassandra links_by_owner for ${owner}: ${stored} links, ${sent} creates sent`);
    }
    // ... and is a working short link: a sample of each path's codes through the redirect door.
    for (const p of o.paths) {
      const sample = await cql.execute("SELECT code FROM links_by_owner WHERE owner_id = ? LIMIT 5", [ownerIds(p)[0]!]);
      let good = 0;
      for (const row of sample) {
        const res = await fetch(`${base}/${String(row["code"])}`, { redirect: "manual" });
        if (res.status === 302 && res.headers.get("location") === targets[p].longUrl) good++;
      }
      checks.check(sample.length === 5 && good === 5, `${p}: ${good} of ${sample.length} sampled codes redirect (302) to ${targets[p].longUrl}`);
    }

    const cpuNames = ["gateway", "shortener", "cassandra", "redis", "h2load"];
    console.log(
      `\nRESULT through=gateway requests=${o.requests} warmup=${o.warmup} concurrency=${o.concurrency} clients=${o.clients} rounds=${o.rounds} (REST: ${o.concurrency} HTTP/1.1 connections)`,
    );
    console.log(`| round | path | creates/s | p50 ms | p99 ms | ok / sent | CPU % of a core: ${cpuNames.join(" / ")} (machine of ${availableParallelism() * 100}) | CPU ms per create: ${cpuNames.join(" / ")} | mean ms inside gateway / shortener | event-loop delay p99 / max ms: gateway; shortener |`);
    console.log("|---|---|---:|---:|---:|---|---|---|---|---|");
    for (const r of rows) {
      const pct = cpuNames.map((n) => Math.round(r.cpu.get(n) ?? 0)).join(" / ");
      const ms = cpuNames.map((n) => (((r.cpu.get(n) ?? 0) / 100 / r.creates) * 1000).toFixed(2)).join(" / ");
      console.log(`| ${r.round} | ${r.path} | ${Math.round(r.creates)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.ok} / ${r.sent} | ${pct} (${Math.round(r.machine)}) | ${ms} | ${r.path === "straight" ? "-" : r.inGatewayMs.toFixed(2)} / ${r.inShortenerMs.toFixed(2)} | ${lagText(r)} |`);
    }
    const mean = (p: PathName) => {
      const xs = rows.filter((r) => r.path === p).map((r) => r.creates);
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    if (o.paths.includes("straight")) {
      const ratios = o.paths.filter((p) => p !== "straight").map((p) => `${p}/straight ${(mean(p) / mean("straight")).toFixed(2)}x`);
      console.log(`throughput ratios (mean over rounds): ${ratios.join(", ")}`);
    }
  } finally {
    await cql?.close();
    await Promise.all(procs.map((p) => p.stop()));
    // The keyspace goes with the run's Cassandra (a fresh temp dir each run).
    await infra.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  checks.exit();
}
