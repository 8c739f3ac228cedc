/**
 * Benchmark (not a test): the cost of one internal gRPC hop, side by side with a bare baseline.
 *
 *   (a) baseline: raw node:http2 h2c server answering a fixed gRPC frame (HealthCheckResponse
 *       SERVING) with grpc-status 0, no protobuf, no framework;
 *   (b) hop:      startGrpcServer (grpc-js + protobuf-es adapter + metrics + per-call
 *                 child logger) answering grpc.health.v1.Health/Check;
 *   (c) plain grpc-js: a grpc-js Server with grpcServiceDefinition(Health) (protobuf-es codec) and
 *                 a hand-written raw grpc-js unary handler: no adapter, no interceptor, no metrics.
 *                 (c) vs (a) is grpc-js's own cost; (b) vs (c) is our adapter's.
 *
 * All are driven by the same h2load command (unary, same body). Rounds alternate a/b/c to spread
 * machine noise. p50/p99 come from h2load's per-request log. Without h2load it exits 2 with the
 * install line; `--inproc` asks for an in-process grpc-js client loop driving (b) only.
 *
 *   npx tsx bench/internal-hop.ts [--requests 30000] [--clients 10] [--streams 10] [--rounds 2]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { createLogger } from "../platform/logging.js";
import { createMetrics } from "../platform/metrics.js";
import { startGrpcServer } from "../platform/grpc/server.js";
import { grpcServiceDefinition } from "../platform/grpc/service-definition.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { EXIT_MISSING_TOOL, provenance } from "./bench-guard.js";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../gen/grpc/health/v1/health_pb.js";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const REQUESTS = Number(args.get("requests") ?? 30_000);
const CLIENTS = Number(args.get("clients") ?? 10);
const STREAMS = Number(args.get("streams") ?? 10);
const ROUNDS = Number(args.get("rounds") ?? 2);
const PATH = "/grpc.health.v1.Health/Check";

// gRPC frames: 1 byte compressed flag + 4 bytes big-endian length + protobuf bytes.
const REQUEST_FRAME = Buffer.from([0, 0, 0, 0, 0]); // HealthCheckRequest{} (empty)
const RESPONSE_FRAME = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]); // HealthCheckResponse{status: SERVING}

interface Result {
  readonly name: string;
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly ok: number;
  readonly failed: number;
}

function startBaseline(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http2.createServer();
  server.on("stream", (stream) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "grpc-message": "" }));
      stream.end(RESPONSE_FRAME);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

/** (c): plain grpc-js + protobuf-es codec (grpcServiceDefinition), raw handler, no interceptors. */
async function startPlainGrpc(): Promise<{ port: number; close(): Promise<void> }> {
  const server = new Server();
  const serving = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
  server.addService(grpcServiceDefinition(Health), {
    check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, cb: sendUnaryData<HealthCheckResponse>) => {
      if (call.request.service !== "") return cb({ code: 5, details: "unknown service" });
      cb(null, serving);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

async function h2load(name: string, port: number, dir: string, requests: number): Promise<Result> {
  const body = path.join(dir, "req.bin");
  const logFile = path.join(dir, `${name.replace(/\W+/g, "_")}.log`);
  writeFileSync(body, REQUEST_FRAME);
  const argv = [
    `-n${requests}`, `-c${CLIENTS}`, `-m${STREAMS}`, "-t1",
    "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
    "--log-file", logFile, `http://127.0.0.1:${port}${PATH}`,
  ];
  const child = spawn("h2load", argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, "exit")) as [number];
  if (code !== 0) throw new Error(`h2load exited ${code}:\n${out}`);
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const m = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(out);
  const durations = readFileSync(logFile, "utf8")
    .trim()
    .split("\n")
    .map((l) => Number(l.split("\t")[2]) / 1000)
    .sort((a, b) => a - b);
  return { name, rps, p50ms: pct(durations, 0.5), p99ms: pct(durations, 0.99), ok: Number(m?.[1]), failed: Number(m?.[2]) };
}

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function clientLoop(name: string, port: number, requests: number): Promise<Result> {
  const client = createGrpcClient(Health, `127.0.0.1:${port}`);
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS * STREAMS }, async () => {
      while (next++ < requests) {
        const s = performance.now();
        await client.check({});
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  client.close();
  lat.sort((a, b) => a - b);
  return { name, rps: requests / secs, p50ms: pct(lat, 0.5), p99ms: pct(lat, 0.99), ok: lat.length, failed: 0 };
}

async function hasH2load(): Promise<boolean> {
  const child = spawn("h2load", ["--version"], { stdio: "ignore" });
  return new Promise((resolve) => {
    child.on("error", () => resolve(false));
    child.on("exit", (code) => resolve(code === 0));
  });
}

async function main(): Promise<void> {
  const log = createLogger({ name: "bench", level: "warn" });
  const baseline = await startBaseline();
  const metrics = process.env["BENCH_NO_METRICS"] ? undefined : createMetrics();
  const hop = await startGrpcServer({ services: [], port: 0, log, ...(metrics ? { metrics } : {}) });
  const plain = await startPlainGrpc();
  for (const port of [hop.port, plain.port]) {
    const check = createGrpcClient(Health, `127.0.0.1:${port}`);
    if ((await check.check({})).status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`${port} not serving`);
    check.close();
  }

  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-hop-"));
  const results: Result[] = [];
  const useH2load = !process.argv.includes("--inproc");
  if (useH2load && !(await hasH2load())) {
    console.error("h2load not found: this benchmark needs it as its load generator. Install it with: apt-get install nghttp2-client (or pass --inproc for the in-process client loop, hop only)");
    process.exit(EXIT_MISSING_TOOL);
  }
  console.log(provenance());
  try {
    if (useH2load) {
      console.log(`driver: h2load -n${REQUESTS} -c${CLIENTS} -m${STREAMS} -t1 (unary ${PATH})`);
      await h2load("warmup-baseline", baseline.port, dir, 5_000);
      await h2load("warmup-hop", hop.port, dir, 5_000);
      await h2load("warmup-plain", plain.port, dir, 5_000);
      for (let r = 1; r <= ROUNDS; r++) {
        // Alternate the order of (b) and (c) between rounds so neither always runs right after (a).
        const bc: [string, number][] = [
          [`(b) grpc-js + adapter hop #${r}`, hop.port],
          [`(c) plain grpc-js + protobuf-es #${r}`, plain.port],
        ];
        if (r % 2 === 0) bc.reverse();
        results.push(await h2load(`(a) baseline raw node:http2 #${r}`, baseline.port, dir, REQUESTS));
        for (const [name, port] of bc) results.push(await h2load(name, port, dir, REQUESTS));
      }
    } else {
      // Only on request: a client loop in this process measures something else (no baseline).
      console.log("--inproc: in-process grpc-js client loop, hop only (no baseline)");
      await clientLoop("warmup", hop.port, 5_000);
      for (let r = 1; r <= ROUNDS; r++) results.push(await clientLoop(`(b) grpc-js + adapter hop #${r}`, hop.port, REQUESTS));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await hop.shutdown(1_000);
    await baseline.close();
    await plain.close();
  }

  console.log(`\nnode ${process.version}, ${os.cpus().length}x ${os.cpus()[0]?.model ?? "?"}, ${new Date().toISOString()}`);
  console.log("| run | req/s | p50 ms | p99 ms | ok | failed |\n|---|---:|---:|---:|---:|---:|");
  for (const r of results) {
    console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.ok} | ${r.failed} |`);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const a = results.filter((r) => r.name.startsWith("(a)"));
  const b = results.filter((r) => r.name.startsWith("(b)"));
  const c = results.filter((r) => r.name.startsWith("(c)"));
  const ratio = (label: string, x: Result[], y: Result[]): void => {
    if (x.length === 0 || y.length === 0) return;
    console.log(
      `${label}: throughput ${(mean(x.map((r) => r.rps)) / mean(y.map((r) => r.rps))).toFixed(2)}x, ` +
        `p50 ${(mean(x.map((r) => r.p50ms)) / mean(y.map((r) => r.p50ms))).toFixed(2)}x, ` +
        `p99 ${(mean(x.map((r) => r.p99ms)) / mean(y.map((r) => r.p99ms))).toFixed(2)}x`,
    );
  };
  console.log("");
  ratio("hop/baseline (b/a)", b, a);
  ratio("plain/baseline (c/a)", c, a);
  ratio("hop/plain (b/c)", b, c);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
