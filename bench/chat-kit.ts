/**
 * What the chat benchmarks (bench/chat-send.ts, chat-delivery.ts, chat-history.ts) share: the
 * mesh under test (embedded, both engines; the cluster engine's servers from testkit), tokens,
 * the load generator in a child process, CPU accounting, percentiles and the run header.
 *
 * Topology: the whole mesh (every service + the gateway) runs in the bench process with
 * `runEmbedded`, as `npm start` does; the load generator runs in a forked child process, so its
 * CPU is not on the gateway's event loop and both can be measured apart. The child talks to the
 * gateway only through the public contract (ChatService, generated client, connect-node gRPC
 * transport over h2c), never to the chat server directly.
 */
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { fileURLToPath } from "node:url";
import { execFileSync, fork } from "node:child_process";
import { availableParallelism, cpus } from "node:os";
import pino from "pino";
import type { Client, Transport } from "@connectrpc/connect";
import { runEmbedded } from "../cmd/mesh.js";
import {
  ChatService,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  GetHistoryRequestSchema,
  GetHistoryResponseSchema,
  SessionRequestSchema,
  SessionResponseSchema,
  SubscribeRequestSchema,
  SubscribeResponseSchema,
  type SendMessageResponse,
  type GetHistoryResponse,
  type SessionResponse,
  type SubscribeResponse,
} from "../gen/switchboard/chat/v1/chat_pb.js";
import { DEV_JWT_SECRET } from "../gateway/auth/config.js";
import { signHs256 } from "../gateway/auth/jwt.js";
import { loadConfig } from "../platform/config.js";
import type { Engine } from "../platform/engine.js";
import { waitFor } from "../testkit/processes.js";
import { infraEnv, startInfra, type Infra } from "../testkit/servers/index.js";
import { cpuTicks, machineTicks, TICKS_PER_SECOND } from "./proc-cpu.js";

export type Args = ReadonlyMap<string, string>;

/** `--name value` pairs; a flag followed by another flag (or nothing) is "". */
export function parseArgs(argv: readonly string[] = process.argv.slice(2)): Args {
  // Flags are otherwise free-form: without this, --help would start a full-size run.
  if (argv.includes("--help") || argv.includes("-h")) {
    const doc = /\/\*\*([\s\S]*?)\*\//.exec(readFileSync(process.argv[1]!, "utf8"))?.[1] ?? "";
    console.log(doc.split("\n").map((l) => l.replace(/^\s*\* ?/, "")).join("\n").trim() || "see bench/README.md");
    process.exit(0);
  }
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    const bare = next === undefined || next.startsWith("--");
    args.set(argv[i]!.replace(/^--/, ""), bare ? "" : next);
    if (!bare) i++;
  }
  return args;
}

export function numberFlag(args: Args, name: string, fallback: number, min = 0): number {
  const raw = args.get(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) usage(`--${name} must be a number >= ${min} (got "${raw}")`);
  return n;
}

export function usage(message: string): never {
  console.error(`usage error: ${message}`);
  process.exit(2);
}

/** The run header every result block starts with: what was run, on which commit, where. */
export function runHeader(): string {
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).trim();
    if (dirty !== "") commit += " (+ uncommitted changes)";
  } catch {
    /* not a checkout: the header says unknown */
  }
  const command = `npx tsx ${process.argv.slice(1).map((a) => a.replace(/^.*\/bench\//, "bench/")).join(" ")}`;
  return [
    `command: ${command}`,
    `commit: ${commit}`,
    `date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
    `node ${process.version}, ${availableParallelism()}x ${cpus()[0]?.model ?? "cpu"}`,
  ].join("\n");
}

/**
 * The load generator is connect-node's gRPC transport (HTTP/2 h2c) driving the generated
 * ChatService client. Without it there is nothing to measure: exit non-zero, never a silent
 * fallback to something else.
 */
export async function loadGenerator(): Promise<{ chatClient(baseUrl: string): Client<typeof ChatService> }> {
  try {
    const { createGrpcTransport } = await import("@connectrpc/connect-node");
    const { createClient } = await import("@connectrpc/connect");
    return {
      chatClient(baseUrl: string) {
        // One transport = one HTTP/2 session: callers that want several connections make several clients.
        const transport: Transport = createGrpcTransport({ baseUrl, pingIntervalMs: 10_000 });
        return createClient(ChatService, transport);
      },
    };
  } catch (e) {
    console.error(`load generator missing: @connectrpc/connect-node could not be loaded (${String(e)}); run npm ci`);
    process.exit(3);
  }
}

export interface ChatMesh {
  readonly engineKind: "memory" | "cluster";
  readonly baseUrl: string;
  readonly engine: Engine;
  /** HS256 secret the gateway verifies caller tokens with. */
  readonly jwtSecret: string;
  /** Processes whose CPU the benchmark reports: the mesh itself and the servers it started. */
  readonly processes: readonly (readonly [string, number])[];
  readonly env: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

/**
 * The embedded mesh on `engineKind`. Cluster: the SWITCHBOARD_* servers of the environment when
 * SWITCHBOARD_CASSANDRA_CONTACT_POINTS is set (e.g. `npm run infra:up`), otherwise fresh
 * Cassandra, ZooKeeper, NATS and Redis from testkit startInfra(); a fresh keyspace either way.
 */
export async function startChatMesh(engineKind: string, tag: string, extraEnv: Record<string, string> = {}): Promise<ChatMesh> {
  if (engineKind !== "memory" && engineKind !== "cluster") usage(`--engine ${engineKind}: expected memory or cluster`);
  const env: Record<string, string> = {
    ...(Object.fromEntries(Object.entries(process.env).filter(([k, v]) => k.startsWith("SWITCHBOARD_") && v !== undefined)) as Record<string, string>),
    SWITCHBOARD_ENGINE: engineKind,
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
    SWITCHBOARD_LOG_LEVEL: "warn",
    SWITCHBOARD_METRICS_PORT: "0",
    ...extraEnv,
  };
  let infra: Infra | undefined;
  const processes: [string, number][] = [["mesh (node)", process.pid]];
  if (engineKind === "cluster") {
    infra = await backendsFor(env, processes);
    env.SWITCHBOARD_CASSANDRA_KEYSPACE ??= `bench_${tag}_${Date.now().toString(36)}`;
    env.SWITCHBOARD_JWT_HS256_SECRET ??= `bench-${tag}-secret-0123456789abcdef0123456789`;
    env.SWITCHBOARD_CODE_KEY ??= `bench-${tag}-code-key-0123456789abcdef`;
  }
  const jwtSecret = env.SWITCHBOARD_JWT_HS256_SECRET ?? DEV_JWT_SECRET;
  try {
    const config = loadConfig(env);
    const running = await runEmbedded(config, pino({ level: "warn" }), { env });
    const baseUrl = `http://127.0.0.1:${running.gatewayPort}`;
    await waitFor(
      "the mesh to be ready (/readyz 200)",
      async () => ((await fetch(`${baseUrl}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
      120_000,
    ).catch(async (e: unknown) => {
      await running.close();
      throw e;
    });
    return {
      engineKind,
      baseUrl,
      engine: running.engine!,
      jwtSecret,
      processes,
      env,
      async close() {
        await running.close();
        await infra?.stop();
      },
    };
  } catch (e) {
    await infra?.stop();
    throw e;
  }
}

/** `authorization` header for `userId`, valid an hour (the gateway caps lifetimes at a day). */
export function authHeaders(jwtSecret: string, userId: string): { authorization: string } {
  const now = Math.floor(Date.now() / 1000);
  return { authorization: `Bearer ${signHs256({ sub: userId, iat: now, exp: now + 3600 }, jwtSecret)}` };
}

const SUBSCRIBE_PATH = "/switchboard.chat.v1.ChatService/Subscribe";
const SESSION_PATH = "/switchboard.chat.v1.ChatService/Session";
const GET_HISTORY_PATH = "/switchboard.chat.v1.ChatService/GetHistory";

/** A Subscribe request body: one gRPC-framed SubscribeRequest. */
export function subscribeBody(deviceId: string): Buffer {
  return grpcFrame(toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { deviceId })));
}

/** HTTP/2 connections for rawSubscribe, the k-th to baseUrls[k mod n], opened on first use. */
export function rawSessionPool(baseUrls: readonly string[], onError: (why: string) => void): { session(k: number): http2.ClientHttp2Session; close(): void } {
  const sessions: http2.ClientHttp2Session[] = [];
  return {
    session(k) {
      let session = sessions[k];
      if (!session || session.closed || session.destroyed) {
        session = http2.connect(baseUrls[k % baseUrls.length]!, { settings: { enablePush: false } });
        session.on("error", (e) => onError(`connection ${k}: ${e.message}`));
        session.setMaxListeners(0);
        sessions[k] = session;
      }
      return session;
    },
    close() {
      for (const s of sessions) s.close();
    },
  };
}

/**
 * One Subscribe over a node:http2 session, gRPC framing parsed by hand: what a lean client costs
 * per event (connect-node's client costs several times more per message, and the load generator
 * shares the machine with what it measures). Returns a function that closes the stream.
 */
export function rawSubscribe(
  session: http2.ClientHttp2Session,
  headers: Record<string, string>,
  body: Buffer,
  on: { onResponse(res: SubscribeResponse): void; onEnd(why: string): void },
): () => void {
  let req: http2.ClientHttp2Stream;
  try {
    req = session.request({ ":method": "POST", ":path": SUBSCRIBE_PATH, "content-type": "application/grpc", te: "trailers", ...headers });
  } catch (e) {
    // The connection is gone (e.g. closed by the gateway): this stream never opened.
    queueMicrotask(() => on.onEnd(`request not sent: ${e instanceof Error ? e.message : String(e)}`));
    return () => {};
  }
  readFrames(req, (data) => on.onResponse(fromBinary(SubscribeResponseSchema, data)), on.onEnd);
  req.end(body);
  return () => req.close(http2.constants.NGHTTP2_CANCEL);
}

/** A lean Session (rawSession): frames out as they are sent, the stream closed when done. */
export interface RawSessionCall {
  send(frame: MessageInitShape<typeof SessionRequestSchema>): void;
  /** Half-closes (the server then ends the session). */
  end(): void;
  close(): void;
}

/**
 * One Session (bidi) over a node:http2 session, gRPC framing by hand: the lean native client
 * (connect-node's client costs the load generator several times more per frame). `onEnd` gets the
 * stream's gRPC status, or why it closed without one.
 */
export function rawSession(
  session: http2.ClientHttp2Session,
  headers: Record<string, string>,
  on: { onResponse(res: SessionResponse): void; onEnd(why: string): void },
): RawSessionCall {
  let req: http2.ClientHttp2Stream;
  try {
    req = session.request({ ":method": "POST", ":path": SESSION_PATH, "content-type": "application/grpc", te: "trailers", ...headers });
  } catch (e) {
    queueMicrotask(() => on.onEnd(`request not sent: ${e instanceof Error ? e.message : String(e)}`));
    return { send: () => undefined, end: () => undefined, close: () => undefined };
  }
  readFrames(req, (data) => on.onResponse(fromBinary(SessionResponseSchema, data)), on.onEnd);
  return {
    send: (frame) => {
      if (!req.closed && !req.writableEnded) req.write(grpcFrame(toBinary(SessionRequestSchema, create(SessionRequestSchema, frame))));
    },
    end: () => req.end(),
    close: () => req.close(http2.constants.NGHTTP2_CANCEL),
  };
}

/** Splits a gRPC response stream into messages; reports the status (or the failure) once it closes. */
function readFrames(req: http2.ClientHttp2Stream, onMessage: (data: Buffer) => void, onEnd: (why: string) => void): void {
  let pending: Buffer | undefined;
  let status = "";
  req.on("response", (h) => {
    if (h["grpc-status"] !== undefined) status = `grpc-status ${String(h["grpc-status"])} ${decodeURIComponent(String(h["grpc-message"] ?? ""))}`;
    else if (h[":status"] !== 200) status = `HTTP ${String(h[":status"])}`;
  });
  req.on("trailers", (h) => {
    status = `grpc-status ${String(h["grpc-status"])} ${decodeURIComponent(String(h["grpc-message"] ?? ""))}`;
  });
  req.on("data", (chunk: Buffer) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      onMessage(buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
    }
    pending = buf.length > 0 ? Buffer.from(buf) : undefined;
  });
  req.on("error", (e) => (status ||= `stream error: ${e.message}`));
  req.on("close", () => onEnd(status || `closed (rst ${req.rstCode ?? "?"})`));
}

/** One gRPC message in its 5-byte envelope. */
function grpcFrame(msg: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + msg.length);
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  return out;
}

/**
 * One unary gRPC call over a node:http2 session, framing by hand (the lean sender: connect-node's
 * client cost the load generator about as much CPU per send as the mesh spent serving it). Resolves
 * with the response message; rejects with "grpc-status N message" or the stream's failure.
 */
export function rawUnary(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", "grpc-timeout": `${timeoutMs}m`, ...headers });
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let message = "";
    const statusOf = (h: http2.IncomingHttpHeaders): void => {
      if (h["grpc-status"] === undefined) return;
      status = String(h["grpc-status"]);
      message = decodeURIComponent(String(h["grpc-message"] ?? ""));
    };
    req.on("response", statusOf);
    req.on("trailers", statusOf);
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => {});
    req.on("close", () => {
      const body = Buffer.concat(chunks);
      if (status === "0" && body.length >= 5 && body.length >= 5 + body.readUInt32BE(1)) resolve(body.subarray(5, 5 + body.readUInt32BE(1)));
      else reject(new Error(status === undefined ? `stream closed without a status (rst ${req.rstCode ?? "?"})` : `grpc-status ${status} ${message}`));
    });
    req.end(grpcFrame(request));
  });
}

const SEND_MESSAGE_PATH = "/switchboard.chat.v1.ChatService/SendMessage";

/** SendMessage through rawUnary. */
export async function rawSendMessage(
  session: http2.ClientHttp2Session,
  headers: Record<string, string>,
  input: { channelId: string; clientMessageId: string; text: string },
  timeoutMs: number,
): Promise<SendMessageResponse> {
  const res = await rawUnary(session, SEND_MESSAGE_PATH, headers, toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, input)), timeoutMs);
  return fromBinary(SendMessageResponseSchema, res);
}

/** GetHistory through rawUnary (the history benchmark's lean reader). */
export async function rawGetHistory(
  session: http2.ClientHttp2Session,
  headers: Record<string, string>,
  input: MessageInitShape<typeof GetHistoryRequestSchema>,
  timeoutMs: number,
): Promise<GetHistoryResponse> {
  const res = await rawUnary(session, GET_HISTORY_PATH, headers, toBinary(GetHistoryRequestSchema, create(GetHistoryRequestSchema, input)), timeoutMs);
  return fromBinary(GetHistoryResponseSchema, res);
}

/** p50 / p99 / max of latencies in ms (sorts in place). */
export function summarize(latencies: number[]): { n: number; p50: number; p99: number; max: number } {
  latencies.sort((a, b) => a - b);
  const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { n: latencies.length, p50: at(0.5), p99: at(0.99), max: latencies[latencies.length - 1] ?? NaN };
}

export const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(2) : "-");

/** CPU of each process over a window, % of one core; the machine's too (200% = both cores of 2 busy). */
export interface CpuSplit {
  readonly parts: readonly (readonly [string, number])[];
  readonly machine: number;
  readonly cores: number;
  readonly secs: number;
}

/** CPU of the given processes and of the machine between the call and stop(). */
export function cpuMeter(processes: readonly (readonly [string, number])[]): { stop(): CpuSplit } {
  const t0 = performance.now();
  const before = processes.map(([, pid]) => cpuTicks(pid));
  const m0 = machineTicks();
  return {
    stop() {
      const secs = (performance.now() - t0) / 1000;
      const m1 = machineTicks();
      const parts = processes.map(([name, pid], i) => [name, ((cpuTicks(pid) - before[i]!) / TICKS_PER_SECOND / secs) * 100] as const);
      const cores = availableParallelism();
      return { parts, machine: ((m1.busy - m0.busy) / (m1.total - m0.total)) * cores * 100, cores, secs };
    },
  };
}

/** "mesh (node) 80% (0.40 ms/send), ...; machine 190% of 200%"; per-op figures when opsPerSec is given. */
export function formatCpu(split: CpuSplit | undefined, opsPerSec?: number, op = "op"): string {
  if (!split) return "-";
  const parts = split.parts
    .filter(([, pct]) => pct >= 0.5 || opsPerSec === undefined)
    .map(([name, pct]) => `${name} ${Math.round(pct)}%${opsPerSec ? ` (${((pct / 100 / opsPerSec) * 1000).toFixed(2)} ms/${op})` : ""}`);
  const ours = split.parts.reduce((a, [, pct]) => a + pct, 0);
  return `${parts.join(", ")}; machine ${Math.round(split.machine)}% of ${split.cores * 100}% (everything else on the machine: ${Math.round(Math.max(0, split.machine - ours))}%)`;
}

/** Messages a loader child sends: phase marks (for the parent's CPU windows) and one result. */
type ChildMessage = { readonly phase: string } | { readonly result: unknown } | { readonly error: string };

export interface LoaderRun<R> {
  readonly result: R;
  /** CPU split of each measured phase, by phase name. */
  readonly cpu: ReadonlyMap<string, CpuSplit>;
}

/**
 * Forks `file` as the load generator with `--loader-child`, hands it `input` over IPC and waits
 * for its result. Between the child's `phase: "<name>"` and `phase: "end <name>"` marks, the
 * CPU of the mesh processes and of the child is measured.
 */
export async function runLoader<R>(file: string, input: unknown, processes: readonly (readonly [string, number])[]): Promise<LoaderRun<R>> {
  const child = fork(file, ["--loader-child"], { execArgv: process.execArgv.filter((a) => !a.startsWith("--cpu-prof")) });
  const all = [...processes, ["load generator (node)", child.pid!] as const];
  const meters = new Map<string, { stop(): CpuSplit }>();
  const cpu = new Map<string, CpuSplit>();
  return new Promise<LoaderRun<R>>((resolve, reject) => {
    let done = false;
    child.on("message", (m: ChildMessage) => {
      if ("phase" in m) {
        if (m.phase.startsWith("end ")) {
          const name = m.phase.slice(4);
          const meter = meters.get(name);
          if (meter) cpu.set(name, meter.stop());
        } else meters.set(m.phase, cpuMeter(all));
      } else if ("result" in m) {
        done = true;
        resolve({ result: m.result as R, cpu });
        child.send("exit");
      } else {
        done = true;
        reject(new Error(`load generator failed: ${m.error}`));
        child.send("exit");
      }
    });
    child.once("exit", (code) => {
      if (!done) reject(new Error(`load generator exited with ${code} before reporting`));
    });
    child.send(input as object);
  });
}

/** Child side of runLoader: runs `fn` on the parent's input, reports, exits when told. */
export function loaderChild<I, R>(fn: (input: I, phase: (name: string) => void) => Promise<R>): void {
  process.once("message", (input: I) => {
    fn(input, (name) => process.send!({ phase: name })).then(
      (result) => process.send!({ result }),
      (e: unknown) => process.send!({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
    );
    process.on("message", (m) => {
      if (m === "exit") process.exit(0);
    });
  });
}

export const isLoaderChild = () => process.argv.includes("--loader-child");

/** Runs a benchmark's main: exit 0 when it passed, 1 when its check failed or it threw. */
export function runMain(main: () => Promise<boolean>): void {
  main().then(
    (passed) => process.exit(passed ? 0 : 1),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The split topology: every part of the chat path in its own process (bench/chat-delivery.ts --topology split). */
export interface SplitChatMesh {
  /** Gateways' public base URLs. */
  readonly baseUrls: readonly string[];
  /** Each chat server's Prometheus endpoint, in start order. */
  readonly chatMetricsUrls: readonly string[];
  readonly jwtSecret: string;
  readonly processes: readonly (readonly [string, number])[];
  /** What a mesh process (named as in `processes`, e.g. "gateway 1") printed so far (warn level and up). */
  output(name: string): string;
  close(): Promise<void>;
}

/**
 * Cluster engine, as separate processes (like gateway/chat-failover.int.test.ts): Cassandra,
 * ZooKeeper, NATS, Redis (testkit startInfra, or the SWITCHBOARD_* servers of the environment),
 * then `switchboard tokenrange`, `chatServers` x `switchboard chat` and `gateways` x
 * `switchboard gateway` on a fresh keyspace. Ready when every gateway's /readyz lists every chat
 * server as serving.
 */
export async function startSplitChatMesh(
  tag: string,
  chatServers: number,
  gateways: number,
  opts: { readonly nodeOptions?: string } = {},
): Promise<SplitChatMesh> {
  const { freePort, spawnSwitchboard } = await import("../testkit/processes.js");
  const env: Record<string, string> = {
    ...(Object.fromEntries(Object.entries(process.env).filter(([k, v]) => k.startsWith("SWITCHBOARD_") && v !== undefined)) as Record<string, string>),
  };
  const processes: [string, number][] = [];
  const infra = await backendsFor(env, processes);
  Object.assign(env, {
    SWITCHBOARD_ENGINE: "cluster",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
    SWITCHBOARD_LOG_LEVEL: "warn",
  });
  env.SWITCHBOARD_CASSANDRA_KEYSPACE ??= `bench_${tag}_${Date.now().toString(36)}`;
  env.SWITCHBOARD_JWT_HS256_SECRET ??= `bench-${tag}-secret-0123456789abcdef0123456789`;
  env.SWITCHBOARD_CODE_KEY ??= `bench-${tag}-code-key-0123456789abcdef`;
  // NODE_OPTIONS for the chat servers and gateways only (e.g. bench/chat-idle.ts: --expose-gc and a GC-on-signal preload).
  const nodeEnv: Record<string, string> = opts.nodeOptions ? { NODE_OPTIONS: opts.nodeOptions } : {};
  // BENCH_CPU_PROF_DIR=dir: a V8 CPU profile of every chat server and gateway, written there at exit.
  const profDir = process.env.BENCH_CPU_PROF_DIR;
  if (profDir) {
    const preload = fileURLToPath(new URL("./cpu-prof-preload.mjs", import.meta.url));
    Object.assign(nodeEnv, { NODE_OPTIONS: `${nodeEnv.NODE_OPTIONS ?? ""} --import ${preload}`.trim(), BENCH_CPU_PROF_DIR: profDir });
  }
  const procs: import("../testkit/processes.js").MeshProcess[] = [];
  const stopAll = async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await infra?.stop();
  };
  try {
    const tokenrangePort = await freePort();
    const chatPorts: number[] = [];
    for (let i = 0; i < chatServers; i++) chatPorts.push(await freePort());
    env.SWITCHBOARD_UPSTREAM_TOKENRANGE = `127.0.0.1:${tokenrangePort}`;
    // Only a fallback: the gateways place every chat call through the registry.
    env.SWITCHBOARD_UPSTREAM_CHAT = `127.0.0.1:${chatPorts[0]}`;
    // No presence service in this topology: point chat's presence reports at a closed port
    // (chat never waits for presence) rather than at whatever listens on the default port.
    env.SWITCHBOARD_UPSTREAM_PRESENCE ??= `127.0.0.1:${await freePort()}`;
    const tokenrange = spawnSwitchboard(["tokenrange"], { ...env, SWITCHBOARD_GRPC_PORT: String(tokenrangePort) });
    procs.push(tokenrange);
    processes.push(["tokenrange", tokenrange.child.pid!]);
    const chatMetricsUrls: string[] = [];
    for (const [i, port] of chatPorts.entries()) {
      const metricsPort = await freePort();
      const p = spawnSwitchboard(["chat"], { ...env, ...nodeEnv, SWITCHBOARD_GRPC_PORT: String(port), SWITCHBOARD_METRICS_PORT: String(metricsPort) });
      procs.push(p);
      processes.push([`chat ${i + 1}`, p.child.pid!]);
      chatMetricsUrls.push(`http://127.0.0.1:${metricsPort}/metrics`);
    }
    const baseUrls: string[] = [];
    for (let i = 0; i < gateways; i++) {
      const port = await freePort();
      const p = spawnSwitchboard(["gateway"], { ...env, ...nodeEnv, SWITCHBOARD_GATEWAY_PORT: String(port) });
      procs.push(p);
      processes.push([`gateway ${i + 1}`, p.child.pid!]);
      baseUrls.push(`http://127.0.0.1:${port}`);
    }
    for (const g of baseUrls) {
      await waitFor(
        `${chatServers} chat servers serving in ${g}/readyz`,
        async () => {
          for (const p of procs) if (p.child.exitCode !== null) throw new Error(`a mesh process exited early:\n${p.output().slice(-3000)}`);
          const res = await fetch(`${g}/readyz`).catch(() => undefined);
          if (!res) return undefined;
          const body = (await res.json().catch(() => ({ checks: [] }))) as { checks?: { name: string; ok: boolean }[] };
          const chats = (body.checks ?? []).filter((c) => c.name.startsWith("chat/"));
          return chats.length === chatServers && chats.every((c) => c.ok) ? true : undefined;
        },
        180_000,
      );
    }
    return {
      baseUrls,
      chatMetricsUrls,
      jwtSecret: env.SWITCHBOARD_JWT_HS256_SECRET!,
      processes,
      output(name) {
        const pid = processes.find(([n]) => n === name)?.[1];
        return procs.find((p) => p.child.pid === pid)?.output() ?? "";
      },
      close: stopAll,
    };
  } catch (e) {
    for (const p of procs) if (p.output().trim() !== "") console.error(`--- ${p.child.spawnargs.slice(-1)[0]} output:\n${p.output().slice(-2000)}`);
    await stopAll();
    throw e;
  }
}

/** Sum of a Prometheus counter's samples whose labels contain `labels` (e.g. `direction="in"`). */
export async function scrapeCounter(url: string, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== "{" && rest[0] !== " ") continue;
    if (labels !== "" && !rest.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/**
 * The backends of a cluster run: started for it (testkit startInfra, stopped by the caller) unless
 * the environment names them; then BENCH_WATCH_PIDS="cassandra=123,nats=456" puts their CPU in the
 * split. Either way their pids are added to `processes`.
 */
export async function backendsFor(env: Record<string, string>, processes: [string, number][]): Promise<Infra | undefined> {
  if (!env.SWITCHBOARD_CASSANDRA_CONTACT_POINTS) {
    console.log("starting Cassandra, ZooKeeper, NATS and Redis for this run (testkit startInfra) ...");
    const infra = await startInfra({ log: (l) => console.log(l) });
    Object.assign(env, infraEnv(infra.info));
    processes.push(["cassandra", infra.cassandra.pid], ["zookeeper", infra.zookeeper.pid], ["nats", infra.nats.pid], ["redis", infra.redis.pid]);
    return infra;
  }
  for (const item of (process.env.BENCH_WATCH_PIDS ?? "").split(",").filter(Boolean)) {
    const [name, pid] = item.split("=");
    if (name && Number(pid) > 0) processes.push([name, Number(pid)]);
  }
  return undefined;
}

export interface OpenLoopResult {
  /** 1 where send k was acknowledged. */
  readonly ok: Uint8Array;
  /** Ack latency of the acknowledged sends, ms. */
  readonly ackLat: number[];
  /** How late each send started against its schedule (the loader's own lag), ms. */
  readonly lag: number[];
  readonly failed: number;
  /** Sends per second actually started. */
  readonly offered: number;
  /** Until the last answer, s. */
  readonly secsTaken: number;
}

/**
 * Open loop: send k is due at t0 + k / rate whether or not earlier ones were answered, so a slow
 * server cannot slow the offered load down and hide its own latency. `send(k)` resolves to
 * undefined when acknowledged or to why not; the first 5 reasons go to `errors`. Each send's due
 * time is written to `scheduled[k]` (latency is measured from it).
 */
export async function openLoop(
  total: number,
  rate: number,
  scheduled: Float64Array,
  send: (k: number) => Promise<string | undefined>,
  errors: string[],
): Promise<OpenLoopResult> {
  const ok = new Uint8Array(total);
  const ackLat: number[] = [];
  const lag: number[] = [];
  let failed = 0;
  const inFlight = new Set<Promise<void>>();
  const interval = 1000 / rate;
  const t0 = performance.now() + 20;
  for (let i = 0; i < total; ) {
    const now = performance.now();
    for (; i < total && t0 + i * interval <= now; i++) {
      const k = i;
      scheduled[k] = t0 + k * interval;
      const start = performance.now();
      lag.push(start - scheduled[k]!);
      const p = send(k)
        .then((why) => {
          if (why === undefined) {
            ok[k] = 1;
            ackLat.push(performance.now() - start);
          } else {
            failed++;
            if (errors.length < 5) errors.push(why);
          }
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    if (i < total) await sleep(Math.max(0, t0 + i * interval - performance.now()));
  }
  const offered = total / ((performance.now() - t0) / 1000);
  await Promise.all(inFlight);
  return { ok, ackLat, lag, failed, offered, secsTaken: (performance.now() - t0) / 1000 };
}
