/**
 * Push (issue 14): notifications per second through the queue to a local provider endpoint, and
 * the queue's lag under that load.
 *
 *   npx tsx bench/push.ts [--mode drain|steady] [--notifications 50000] [--rounds 3] [--rate 5000] [--seconds 10]
 *                         [--users 1000] [--concurrency 64] [--delay-ms 0]
 *
 * --mode drain (default): the queue's throughput. An API-only push process (worker concurrency 0)
 * takes --notifications as fast as SendNotification answers (a backlog, as after a provider
 * outage or a burst), then a worker process starts and drains it: deliveries per second from its
 * first delivery to its last, with the queue's lag falling from its peak. --rounds times over
 * (a fresh worker process each), the median round reported.
 * --mode steady: one push process (API and worker) under an open-loop offered load of --rate for
 * --seconds: whether the worker keeps up while the API takes requests, and the lag meanwhile.
 *
 * Cluster engine, separate processes: `switchboard push` (the SendNotification API and the worker,
 * measured alone) and a gateway (device registration only), on Cassandra, NATS JetStream and Redis
 * from the testkit (or the SWITCHBOARD_* servers of the environment). This process is the load
 * generator (SendNotification over gRPC, open loop at --rate) and the provider: a local webhook
 * receiver verifying every Standard Webhooks signature (answering after --delay-ms).
 *
 * Reported: enqueue answers per second, deliveries per second at the receiver (while the offered
 * load lasted, and for the backlog after it), enqueue-to-delivery latency p50/p99, the queue's lag
 * (push_queue_pending_messages, push_queue_oldest_age_seconds scraped every 250 ms) and CPU per
 * process. Checks (exit 1): every enqueue answered OK, every notification delivered exactly once
 * (no process is killed here, so a second copy would be a bug), signatures all valid.
 */
import { performance } from "node:perf_hooks";
import { createClient } from "@connectrpc/connect";
import { Platform, PushService } from "../gen/switchboard/push/v1/push_pb.js";
import { Checks } from "./bench-guard.js";
import { backendsFor, cpuMeter, fmt, formatCpu, numberFlag, openLoop, parseArgs, runHeader, runMain, scrapeCounter, sleep, summarize, usage } from "./chat-kit.js";

const args = parseArgs();
const MODE = args.get("mode") ?? "drain";
const NOTIFICATIONS = numberFlag(args, "notifications", 50_000, 1);
const RATE = numberFlag(args, "rate", 5_000, 1);
const SECONDS = numberFlag(args, "seconds", 10, 1);
const USERS = numberFlag(args, "users", 1_000, 1);
const CONCURRENCY = numberFlag(args, "concurrency", 64, 1);
const DELAY_MS = numberFlag(args, "delay-ms", 0, 0);
const PROFILE_DIR = args.get("profile-worker");
const ROUNDS = numberFlag(args, "rounds", 3, 1);

runMain(async () => {
  console.log(runHeader());
  if (MODE !== "drain" && MODE !== "steady") usage(`--mode must be drain or steady (got ${MODE})`);
  const { freePort, spawnSwitchboard, waitFor } = await import("../testkit/processes.js");
  const { makeWebhookSecret, startWebhookServer } = await import("../testkit/push-endpoints/webhook-server.js");
  const { createGrpcClient } = await import("../platform/grpc/client.js");
  const { transportFor, withHeaders, bearer } = await import("../gateway/chat-wire.js");
  const { signHs256 } = await import("../gateway/auth/jwt.js");
  const checks = new Checks();

  const env: Record<string, string> = Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith("SWITCHBOARD_") && e[1] !== undefined),
  );
  const processes: [string, number][] = [];
  const infra = await backendsFor(env, processes);
  const secret = makeWebhookSecret();
  const receiver = await startWebhookServer({ key: secret.key, ...(DELAY_MS ? { delayMs: DELAY_MS } : {}) });
  const jwtSecret = "bench-push-secret-0123456789abcdef0123456789";
  const apiPort = await freePort();
  const gatewayPort = await freePort();
  Object.assign(env, {
    SWITCHBOARD_ENGINE: "cluster",
    SWITCHBOARD_LOG_LEVEL: "warn",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
    SWITCHBOARD_CASSANDRA_KEYSPACE: env.SWITCHBOARD_CASSANDRA_KEYSPACE ?? `bench_push_${Date.now().toString(36)}`,
    SWITCHBOARD_JWT_HS256_SECRET: jwtSecret,
    SWITCHBOARD_UPSTREAM_PUSH: `127.0.0.1:${apiPort}`,
    SWITCHBOARD_PUSH_WEBHOOK_SECRET: secret.text,
    SWITCHBOARD_PUSH_WEBHOOK_HOSTS: "127.0.0.1",
    SWITCHBOARD_PUSH_ALLOW_PRIVATE_TARGETS: "true",
  });
  const procs: import("../testkit/processes.js").MeshProcess[] = [];
  const spawnPush = async (name: string, port: number, concurrency: number) => {
    const metricsPort = await freePort();
    // --profile-worker <dir>: a V8 CPU profile of the worker process (bench/cpu-prof-preload.mjs).
    const profile: Record<string, string> = concurrency > 0 && PROFILE_DIR ? { NODE_OPTIONS: `--import ${new URL("./cpu-prof-preload.mjs", import.meta.url).pathname}`, BENCH_CPU_PROF_DIR: PROFILE_DIR } : {};
    const p = spawnSwitchboard(["push"], { ...env, ...profile, SWITCHBOARD_GRPC_PORT: String(port), SWITCHBOARD_METRICS_PORT: String(metricsPort), SWITCHBOARD_PUSH_WORKER_CONCURRENCY: String(concurrency) });
    procs.push(p);
    processes.unshift([name, p.child.pid!]);
    return { proc: p, metrics: `http://127.0.0.1:${metricsPort}/metrics` };
  };
  // drain: the API alone takes the backlog; steady: one process serves and drains.
  const api = await spawnPush(MODE === "drain" ? "push api" : "push (api + worker)", apiPort, MODE === "drain" ? 0 : CONCURRENCY);
  const gateway = spawnSwitchboard(["gateway"], { ...env, SWITCHBOARD_GATEWAY_PORT: String(gatewayPort) });
  procs.push(gateway);
  processes.push(["gateway", gateway.child.pid!], ["bench (load + receiver)", process.pid]);
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await receiver.close();
    await infra?.stop();
  };
  try {
    const base = `http://127.0.0.1:${gatewayPort}`;
    await waitFor("the gateway ready", async () => ((await fetch(`${base}/readyz`).catch(() => undefined))?.ok ? true : undefined), 180_000);

    const probe = createClient(PushService, transportFor("connect-1.1", base, [withHeaders(bearer(signHs256({ sub: "bench-probe", exp: Math.floor(Date.now() / 1000) + 3_600 }, jwtSecret)))]));
    await waitFor("the push service answering through the gateway", async () => ((await probe.listDevices({}).then(() => true, () => false)) ? true : undefined), 180_000);

    // One webhook device per user, registered as a client would (through the gateway).
    const users = Array.from({ length: USERS }, (_, i) => `bench-push-user-${i}`);
    for (let i = 0; i < users.length; i += 50) {
      await Promise.all(
        users.slice(i, i + 50).map((u) => {
          const token = signHs256({ sub: u, exp: Math.floor(Date.now() / 1000) + 3_600 }, jwtSecret);
          const client = createClient(PushService, transportFor("connect-1.1", base, [withHeaders(bearer(token))]));
          return client.registerDevice({ deviceId: "hook", platform: Platform.WEBHOOK, token: receiver.hook(u) });
        }),
      );
    }
    console.log(`registered ${USERS} webhook devices`);
    const client = createGrpcClient(PushService, `127.0.0.1:${apiPort}`, { defaultTimeoutMs: 30_000 });
    const notify = (id: string, k: number) => client.sendNotification({ notificationId: id, userId: users[k % USERS]!, title: "bench", body: `notification ${k}` });

    const lag = { pending: [] as number[], oldest: [] as number[] };
    let scraping = true;
    const scrape = async (url: string) => {
      while (scraping) {
        // Gauges are one sample each (labelled {service="push"}): the sum is the value.
        const read = (name: string) => scrapeCounter(url, name).catch(() => NaN);
        lag.pending.push(await read("push_queue_pending_messages"));
        lag.oldest.push(await read("push_queue_oldest_age_seconds"));
        await sleep(250);
      }
    };
    const finite = (xs: number[]) => xs.filter(Number.isFinite);
    const max = (xs: number[]) => (finite(xs).length ? Math.max(...finite(xs)) : NaN);
    const before = receiver.received.length;
    const origin = Date.now() - performance.now();
    const sentAt = new Float64Array(MODE === "drain" ? NOTIFICATIONS : RATE * SECONDS);
    const total = sentAt.length;

    const table: string[][] = [];
    const cpuLines: string[] = [];
    if (MODE === "drain") {
      // Each round: a backlog, then a fresh worker process drains it and stops. The median round
      // is the figure (this box is noisy; one round can be 30 % off the next).
      const rates: number[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const since = receiver.received.length;
        const ids = Array.from({ length: total }, (_, k) => `bench-${round}-${k}`);
        // 1. The backlog: as fast as the API answers, 64 at a time.
        const cpuFill = cpuMeter(processes);
        const t0 = performance.now();
        let next = 0;
        let failed = 0;
        const enqueueLat: number[] = [];
        await Promise.all(
          Array.from({ length: 64 }, async () => {
            while (next < total) {
              const k = next++;
              sentAt[k] = performance.now();
              await notify(ids[k]!, k).then(() => enqueueLat.push(performance.now() - sentAt[k]!), () => failed++);
            }
          }),
        );
        const fillSecs = (performance.now() - t0) / 1000;
        const fillCpu = cpuFill.stop();
        checks.check(failed === 0, `round ${round}: every enqueue answered OK (${failed} failed)`);
        checks.check(receiver.received.length === since, `round ${round}: nothing delivered while no worker runs`);
        // 2. A worker process drains it.
        lag.pending.length = 0;
        lag.oldest.length = 0;
        scraping = true;
        const worker = await spawnPush("push worker", await freePort(), CONCURRENCY);
        const scraper = scrape(worker.metrics);
        await waitFor("the first delivery", async () => (receiver.received.length > since ? true : undefined), 180_000);
        const firstAt = performance.now();
        const cpuDrain = cpuMeter(processes);
        await waitFor("every notification delivered", async () => (receiver.received.length - since >= total ? true : undefined), 900_000);
        const drainSecs = (performance.now() - firstAt) / 1000;
        const drainCpu = cpuDrain.stop();
        await sleep(1_500);
        scraping = false;
        await scraper;
        await worker.proc.stop();
        processes.splice(processes.findIndex(([, pid]) => pid === worker.proc.child.pid), 1);
        procs.splice(procs.indexOf(worker.proc), 1);
        const e = summarize(enqueueLat);
        rates.push(total / drainSecs);
        table.push(
          [`round ${round}: backlog queued through SendNotification (64 in flight), per s`, `${(total / fillSecs).toFixed(0)} (${total} in ${fillSecs.toFixed(1)} s; p50 / p99 ${fmt(e.p50)} / ${fmt(e.p99)} ms)`],
          [`round ${round}: **drained to the webhook receiver, per s** (first to last delivery)`, `**${(total / drainSecs).toFixed(0)}** (${drainSecs.toFixed(1)} s)`],
          [`round ${round}: queue pending peak / at the end; oldest pending age peak s`, `${max(lag.pending)} / ${finite(lag.pending).at(-1) ?? NaN}; ${fmt(max(lag.oldest))}`],
        );
        cpuLines.push(`round ${round}: CPU while queuing: ${formatCpu(fillCpu, total / fillSecs, "enqueue")}`, `round ${round}: CPU while draining: ${formatCpu(drainCpu, total / drainSecs, "delivery")}`);
        checkDelivered(ids, since, `round ${round}: `);
      }
      const sorted = [...rates].sort((a, b) => a - b);
      table.push([`**median drain of ${ROUNDS} rounds, per s**`, `**${sorted[Math.floor((sorted.length - 1) / 2)]!.toFixed(0)}** (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)})`]);
    } else {
      const scraper = scrape(api.metrics);
      const t0 = performance.now();
      const cpu = cpuMeter(processes);
      const errors: string[] = [];
      const run = await openLoop(total, RATE, sentAt, async (k) => {
        try {
          await notify(`bench-${k}`, k);
          return undefined;
        } catch (err) {
          return err instanceof Error ? err.message : String(err);
        }
      }, errors);
      const loadEnded = performance.now();
      const deliveredDuringLoad = receiver.received.length - before;
      const cpuLoad = cpu.stop();
      await waitFor("every notification delivered", async () => (receiver.received.length - before >= total ? true : undefined), 900_000);
      const drained = performance.now();
      await sleep(1_500);
      scraping = false;
      await scraper;
      checks.check(run.failed === 0, `every enqueue answered OK (${run.failed} failed${errors.length ? `: ${errors.join("; ")}` : ""})`);
      const latencies: number[] = [];
      const seen = new Set<string>();
      for (const r of receiver.received.slice(before)) {
        if (seen.has(r.notificationId)) continue;
        seen.add(r.notificationId);
        const k = Number(r.notificationId.slice("bench-".length));
        if (r.at !== undefined && Number.isInteger(k)) latencies.push(r.at - (origin + sentAt[k]!));
      }
      const l = summarize(latencies);
      const e = summarize(run.ackLat);
      const loadSecs = (loadEnded - t0) / 1000;
      table.push(
        [`enqueue answered OK per s (offered ${run.offered.toFixed(0)}/s)`, `${((total - run.failed) / run.secsTaken).toFixed(0)} (p50 / p99 ${fmt(e.p50)} / ${fmt(e.p99)} ms)`],
        ["**delivered per s while the load ran**", `**${(deliveredDuringLoad / loadSecs).toFixed(0)}**`],
        ["backlog when the load stopped, drained in s", `${total - deliveredDuringLoad}, ${((drained - loadEnded) / 1000).toFixed(1)}`],
        ["enqueue-to-delivery p50 / p99 / max ms", `${fmt(l.p50)} / ${fmt(l.p99)} / ${fmt(l.max)}`],
        ["queue pending peak / oldest pending age peak s", `${max(lag.pending)} / ${fmt(max(lag.oldest))}`],
      );
      cpuLines.push(`CPU while the load ran: ${formatCpu(cpuLoad, deliveredDuringLoad / loadSecs, "delivery")}`);
    }
    client.close();

    console.log(`\nmode ${MODE}: ${total} notifications${MODE === "drain" ? ` per round, ${ROUNDS} rounds,` : ""} to ${USERS} users (one webhook device each), worker concurrency ${CONCURRENCY}, receiver delay ${DELAY_MS} ms`);
    console.log("| measure | value |\n|---|---:|");
    for (const [k, v] of table) console.log(`| ${k} | ${v} |`);
    console.log("");
    for (const line of cpuLines) console.log(line);
    if (MODE !== "drain") checkDelivered(Array.from({ length: total }, (_, k) => `bench-${k}`), before, "");
    checks.check(receiver.refused.length === 0, `every webhook signature valid (${receiver.refused.length} refused)`);

    /** Every one of `ids` reached the receiver since `since`, none twice (no process is killed here). */
    function checkDelivered(ids: readonly string[], since: number, label: string): void {
      const counts = new Map<string, number>();
      for (const r of receiver.received.slice(since)) counts.set(r.notificationId, (counts.get(r.notificationId) ?? 0) + 1);
      const missing = ids.filter((id) => !counts.has(id)).length;
      const twice = [...counts.values()].filter((n) => n > 1).length;
      checks.check(missing === 0, `${label}every notification delivered (${missing} missing)`);
      checks.check(twice === 0, `${label}none delivered twice (${twice})`);
    }
  } finally {
    await stop();
  }
  return !checks.failed;
});
