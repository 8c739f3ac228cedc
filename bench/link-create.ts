/**
 * Benchmark (not a test): link creation per second through the shortener's gRPC server on the
 * cluster engine (real Cassandra + ZooKeeper + NATS + Redis started by testkit startInfra()).
 *
 *   npx tsx bench/link-create.ts [--requests 20000] [--concurrency 64] [--clients 4] [--mode generated|alias|idem]
 *
 * mode generated: CreateLink without alias (leased code + plain INSERT + listing row);
 * mode alias: custom alias (LWT INSERT IF NOT EXISTS); mode idem: generated + idempotency_key
 * (adds an idempotency read + LWT). `--clients` gRPC channels share `--concurrency` in-flight calls.
 * Prints creates/s and p50/p99 latency after a warm-up of 2,000 creates.
 */
import { randomUUID } from "node:crypto";
import pino from "pino";
import cassandra from "cassandra-driver";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../platform/config.js";
import { openEngine } from "../platform/engine.js";
import { silentLog } from "../platform/engines/log.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { grpcService, startGrpcServer } from "../platform/grpc/server.js";
import { identityHeaders } from "../platform/identity.js";
import { createMetrics } from "../platform/metrics.js";
import { shortenerModule } from "../services/shortener/module.js";
import { infraEnv, startInfra } from "../testkit/servers/index.js";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const REQUESTS = Number(args.get("requests") ?? 20_000);
const CONCURRENCY = Number(args.get("concurrency") ?? 64);
const CLIENTS = Number(args.get("clients") ?? 4);
const MODE = args.get("mode") ?? "generated";
const WARMUP = 2_000;

async function main(): Promise<void> {
  console.log(`starting infra ...`);
  const infra = await startInfra({ log: (l) => console.log(l) });
  const keyspace = `bench_links_${Date.now().toString(36)}`;
  process.env["SWITCHBOARD_CODE_KEY"] ??= "bench-link-create-key-0123456789";
  const config = loadConfig({ ...infraEnv(infra.info), SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace, SWITCHBOARD_PUBLIC_BASE_URL: "https://sb.example" });
  const engine = await openEngine(config, silentLog);
  const log = pino({ level: "warn" });
  try {
    for (let i = 0; i < 600 && !(await engine.readiness()).ready; i++) await new Promise((r) => setTimeout(r, 100));
    const running = await shortenerModule.create({ config, log, engine });
    const server = await startGrpcServer({ services: [grpcService(ShortenerService, running.impl)], port: 0, log, metrics: createMetrics() });
    const clients = Array.from({ length: CLIENTS }, (_, i) =>
      createGrpcClient(ShortenerService, `127.0.0.1:${server.port}`, { channelOptions: { "grpc.primary_user_agent": `bench-${i}` }, defaultTimeoutMs: 30_000 }),
    );
    const run = async (n: number, tag: string): Promise<{ secs: number; lat: number[]; failed: number }> => {
      let next = 0;
      let failed = 0;
      const lat: number[] = [];
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async (_, w) => {
          const client = clients[w % CLIENTS]!;
          const opts = { headers: identityHeaders({ userId: `bench-user-${w % 16}`, kind: "user" }) };
          for (let i = next++; i < n; i = next++) {
            const req =
              MODE === "alias"
                ? { longUrl: `https://example.com/${tag}/${i}`, customAlias: `a-${tag}-${i}` }
                : MODE === "idem"
                  ? { longUrl: `https://example.com/${tag}/${i}`, idempotencyKey: `${tag}-${i}` }
                  : { longUrl: `https://example.com/${tag}/${i}` };
            const s = performance.now();
            try {
              await client.createLink(req, opts);
              lat.push(performance.now() - s);
            } catch (e) {
              if (failed++ < 3) console.error(String(e));
            }
          }
        }),
      );
      return { secs: (performance.now() - t0) / 1000, lat, failed };
    };
    await run(WARMUP, `w${randomUUID().slice(0, 4)}`);
    const r = await run(REQUESTS, `m${randomUUID().slice(0, 4)}`);
    r.lat.sort((a, b) => a - b);
    const pct = (p: number) => r.lat[Math.min(r.lat.length - 1, Math.floor(p * r.lat.length))]!.toFixed(2);
    console.log(
      `RESULT mode=${MODE} requests=${REQUESTS} concurrency=${CONCURRENCY} clients=${CLIENTS}: ` +
        `${Math.round(r.lat.length / r.secs)} creates/s, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, ok ${r.lat.length}, failed ${r.failed}`,
    );
    clients.forEach((c) => c.close());
    await server.shutdown(1_000);
    await running.close?.();
  } finally {
    await engine.close();
    const admin = new cassandra.Client({
      contactPoints: [infra.info.cassandra.contactPoint],
      localDataCenter: infra.info.cassandra.localDataCenter,
      protocolOptions: { port: infra.info.cassandra.port },
    });
    await admin.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).catch(() => undefined);
    await admin.shutdown();
    await infra.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
