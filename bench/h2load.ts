/**
 * Helpers to drive gRPC unary calls with h2load (nghttp2-client, written in C): build a gRPC
 * request frame, run one h2load process and parse its summary and `--log-file`.
 *
 * h2load only sees HTTP/2: a gRPC error is HTTP 200 with a non-zero `grpc-status` trailer, so
 * its "succeeded" is no proof the calls succeeded; check the server's own counters as well.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

export const H2LOAD_INSTALL_HINT = "h2load not found: install it with `apt-get install nghttp2-client`";

/** gRPC length-prefixed message: 1 byte 0 (uncompressed) + 4-byte big-endian length + bytes. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

export async function hasH2load(): Promise<boolean> {
  const child = spawn("h2load", ["--version"], { stdio: "ignore" });
  return new Promise((resolve) => {
    child.on("error", () => resolve(false));
    child.on("exit", (code) => resolve(code === 0));
  });
}

export interface H2loadOptions {
  readonly url: string;
  /** -n, -c, -m; one thread (-t1). */
  readonly requests: number;
  readonly clients: number;
  readonly streams: number;
  /** File with the request body (a gRPC frame unless `contentType` says otherwise), sent as POST with -d. */
  readonly bodyFile: string;
  /**
   * Content type of the body (default application/grpc). Only application/grpc also sends
   * `te: trailers`; other protocols (Connect, REST JSON) answer errors with an HTTP status.
   */
  readonly contentType?: string;
  /** HTTP/1.1 (--h1, one request in flight per connection when streams = 1) instead of h2c. */
  readonly h1?: boolean;
  /** HTTP status every answer should have (default 200); other log rows count in `non200`. */
  readonly okStatus?: number;
  /** Extra headers besides content-type (and te: trailers for gRPC). */
  readonly headers?: Iterable<[string, string]>;
  /** Per-request log (--log-file), read back for latencies. */
  readonly logFile: string;
}

export interface H2loadResult {
  /** From the summary: requests total / succeeded (2xx, 3xx) / failed / errored / timeout. */
  readonly total: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly errored: number;
  readonly timeout: number;
  /** h2load's own req/s figure. */
  readonly rps: number;
  /** Per-request durations from the log, in ms, unsorted. */
  readonly durationsMs: number[];
  /** Log rows whose HTTP status was not `okStatus` (200 unless told; -1 = no response). */
  readonly non200: number;
  readonly output: string;
}

/** Starts h2load; `done` resolves when it has exited (and been reaped) with its parsed result. */
export function startH2load(o: H2loadOptions): { pid: number | undefined; done: Promise<H2loadResult> } {
  const contentType = o.contentType ?? "application/grpc";
  const argv = [
    `-n${o.requests}`, `-c${o.clients}`, `-m${o.streams}`, "-t1", ...(o.h1 ? ["--h1"] : []),
    "-d", o.bodyFile, "-H", `content-type: ${contentType}`, ...(contentType === "application/grpc" ? ["-H", "te: trailers"] : []),
    ...[...(o.headers ?? [])].flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    "--log-file", o.logFile, o.url,
  ];
  const child = spawn("h2load", argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const done = new Promise<H2loadResult>((resolve, reject) => {
    child.once("error", (e) => reject(new Error(`${H2LOAD_INSTALL_HINT} (${String(e)})`)));
    child.once("close", (code) => {
      if (code !== 0) return reject(new Error(`h2load exited ${code}:\n${out}`));
      try {
        resolve({ ...parseSummary(out), ...parseLog(o.logFile, o.okStatus), output: out });
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
  return { pid: child.pid, done };
}

export function parseSummary(out: string): Pick<H2loadResult, "total" | "succeeded" | "failed" | "errored" | "timeout" | "rps"> {
  const m = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  if (!m) throw new Error(`cannot parse h2load output:\n${out}`);
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  return { total: Number(m[1]), succeeded: Number(m[2]), failed: Number(m[3]), errored: Number(m[4]), timeout: Number(m[5]), rps };
}

/** --log-file rows: start time (us since epoch) \t HTTP status \t us until end of response. */
export function parseLog(file: string, okStatus = 200): Pick<H2loadResult, "durationsMs" | "non200"> {
  const durationsMs: number[] = [];
  let non200 = 0;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    const [, status, us] = line.split("\t");
    if (status !== String(okStatus)) non200++;
    durationsMs.push(Number(us) / 1000);
  }
  return { durationsMs, non200 };
}

/** Percentile of an ascending array (nearest rank below), NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}
