// Shared process plumbing for the real-server harness: temp dirs, free ports, a supervisor that
// never lets a server outlive the Node process that started it, readiness polling, orphan checks.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, writeFileSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/** Every temp dir (and so every server command line) contains this marker. */
export const MARKER = "switchboard-it-";

/**
 * Run tag: lets parallel runs on one machine tell their processes apart. Set once by the first
 * process that loads this module (vitest's main process) and inherited by its workers via env.
 */
export const RUN_TAG: string = (process.env.SWITCHBOARD_IT_RUN ||= `r${process.pid}`);

export interface ServerHandle {
  /** Short server name: zookeeper | nats | redis | cassandra. */
  readonly name: string;
  /** Version reported by the running server itself. */
  readonly version: string;
  /** PID of the server process (not of its supervisor). */
  readonly pid: number;
  /** Fresh temp dir holding config, data and logs; removed by stop(). */
  readonly dir: string;
  /** Milliseconds from spawn to verified readiness. */
  readonly startMs: number;
  /** SIGTERM, wait, SIGKILL; then removes dir. Idempotent. */
  stop(): Promise<void>;
}

export function makeRunDir(name: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `${MARKER}${RUN_TAG}-${name}-`));
}

/** A free TCP port on 127.0.0.1 (bind port 0, read, close). A race is possible: callers retry. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new Error("could not read the bound port"));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

/** `n` distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Waits for `p` at most `ms`; true if it settled in time. The timer keeps the event loop alive
 * meanwhile (the supervisor pipes are unref'd) and is cleared as soon as `p` settles.
 */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Last `maxBytes` of a file as text ("" when it does not exist). */
export function tailFile(file: string, maxBytes = 4000): string {
  try {
    const size = statSync(file).size;
    const start = Math.max(0, size - maxBytes);
    const fd = openSync(file, "r");
    try {
      const buf = Buffer.alloc(size - start);
      readSync(fd, buf, 0, buf.length, start);
      return buf.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return "";
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie still answers kill(0); treat it as gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

// The supervisor. $1 dir, $2 log file, $3 grace seconds, rest: the server command.
// It starts the server with stdin from /dev/null and output into the log, prints the server pid,
// then watches its own stdin, a pipe whose write end only the Node parent holds: EOF means the
// parent is gone (even after SIGKILL), so the supervisor stops the server (TERM, grace, KILL)
// and removes the temp dir. SIGTERM/SIGINT/SIGHUP to the supervisor do the same. If the server
// dies by itself, the supervisor keeps the dir (so its logs can be read) until one of those.
const SUPERVISOR = `# switchboard testkit supervisor (see testkit/servers/process.ts)
dir=$1; log=$2; grace=$3; shift 3
"$@" </dev/null >>"$log" 2>&1 &
child=$!
echo "$child"
stopping=0; gone=0
trap 'stopping=1' TERM INT HUP
parent_gone() { read -r -t 0.2 _line; rc=$?; [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; }
while [ "$stopping" = 0 ] && kill -0 "$child" 2>/dev/null; do
  if parent_gone; then gone=1; break; fi
done
if kill -0 "$child" 2>/dev/null; then
  kill -TERM "$child" 2>/dev/null
  i=0
  while [ "$i" -lt $((grace * 10)) ] && kill -0 "$child" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$child" 2>/dev/null
fi
wait "$child" 2>/dev/null; code=$?
# The server exited by itself: keep its dir (logs) until the parent stops us or goes away.
if [ "$stopping" = 0 ] && [ "$gone" = 0 ]; then
  while [ "$stopping" = 0 ]; do if parent_gone; then break; fi; done
fi
if [ "\${SWITCHBOARD_IT_KEEP:-}" != 1 ]; then rm -rf -- "$dir"; fi
exit "$code"
`;

export interface SupervisedProcess {
  readonly pid: number;
  readonly supervisorPid: number;
  readonly dir: string;
  readonly logFile: string;
  /** Resolves when the supervisor (and so the server) has exited. */
  readonly exited: Promise<number | null>;
  /** True once the server process is gone (its supervisor may still be around). */
  hasExited(): boolean;
  /** SIGTERM the server via its supervisor, wait up to graceMs, then SIGKILL everything; remove dir. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<SupervisedProcess & { killNow(sig: NodeJS.Signals): void }>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // On a normal exit the stdin pipes close anyway; TERM makes the supervisors act at once.
  process.on("exit", () => {
    for (const p of live) p.killNow("SIGTERM");
  });
  for (const [sig, num] of [
    ["SIGINT", 2],
    ["SIGTERM", 15],
    ["SIGHUP", 1],
  ] as const) {
    process.on(sig, () => {
      for (const p of live) p.killNow("SIGTERM");
      // If nobody else handles the signal, keep its default meaning: exit.
      if (process.listenerCount(sig) <= 1) process.exit(128 + num);
    });
  }
}

export interface SpawnOptions {
  name: string;
  dir: string;
  command: string;
  args: string[];
  /** Defaults to `${dir}/<name>.out` (server stdout+stderr). */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Seconds the supervisor waits after SIGTERM before SIGKILL. */
  graceSeconds?: number;
}

/** Spawns `command args` under the supervisor. Resolves once the server pid is known. */
export async function spawnSupervised(opts: SpawnOptions): Promise<SupervisedProcess> {
  installExitHooks();
  const logFile = opts.logFile ?? path.join(opts.dir, `${opts.name}.out`);
  const grace = opts.graceSeconds ?? 10;
  mkdirSync(path.dirname(logFile), { recursive: true });
  // The script lives in the temp dir, so the supervisor's command line carries the marker and
  // reads well in `pgrep -af switchboard-it-`. (Unlinking it later is harmless: bash keeps it open.)
  const script = path.join(opts.dir, "supervise.sh");
  writeFileSync(script, SUPERVISOR);
  const sup: ChildProcess = spawn(
    "bash",
    [script, opts.dir, logFile, String(grace), opts.command, ...opts.args],
    {
      cwd: opts.cwd ?? opts.dir,
      env: opts.env ?? process.env,
      stdio: ["pipe", "pipe", "ignore"],
      // Own process group: a terminal Ctrl-C reaches us, and we stop servers in order.
      detached: true,
    },
  );
  let exitCode: number | null = null;
  let hasExited = false;
  const exited = new Promise<number | null>((resolve) => {
    sup.once("exit", (code, signal) => {
      hasExited = true;
      exitCode = code ?? (signal ? 128 : null);
      resolve(exitCode);
    });
  });
  sup.stdin?.on("error", () => {}); // EPIPE if the supervisor dies first
  const pid = await new Promise<number>((resolve, reject) => {
    let buf = "";
    const onData = (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        sup.stdout?.off("data", onData);
        resolve(Number(buf.slice(0, nl).trim()));
      }
    };
    sup.stdout?.on("data", onData);
    sup.once("error", reject);
    void exited.then((c) => reject(new Error(`${opts.name}: supervisor exited (${c}) before starting the server`)));
  });
  // Do not keep the Node event loop alive because of these pipes.
  sup.unref();
  (sup.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  (sup.stdout as unknown as { unref?: () => void } | null)?.unref?.();

  const supervisorPid = sup.pid!;
  let stopping: Promise<void> | undefined;
  const proc = {
    pid,
    supervisorPid,
    dir: opts.dir,
    logFile,
    exited,
    hasExited: () => hasExited || !pidAlive(pid),
    killNow(sig: NodeJS.Signals) {
      if (hasExited) return;
      try {
        process.kill(supervisorPid, sig);
      } catch {
        // already gone
      }
    },
    stop(graceMs = grace * 1000): Promise<void> {
      stopping ??= (async () => {
        if (!hasExited) {
          proc.killNow("SIGTERM");
          const done = await settlesWithin(exited, graceMs + 3000);
          if (!done) {
            // Supervisor stuck: kill its whole process group (the server is in it too).
            for (const target of [-supervisorPid, pid, supervisorPid]) {
              try {
                process.kill(target, "SIGKILL");
              } catch {
                // gone
              }
            }
            await settlesWithin(exited, 2000);
          }
        }
        const deadline = Date.now() + 5000;
        while (pidAlive(pid) && Date.now() < deadline) await sleep(50);
        if (pidAlive(pid)) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
        live.delete(proc);
        if (process.env.SWITCHBOARD_IT_KEEP !== "1") rmSync(opts.dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  live.add(proc);
  void exited.then(() => {
    if (!stopping) live.delete(proc);
  });
  return proc;
}

/**
 * Polls `probe` until it returns a value (not undefined) or throws a non-retryable error.
 * Rejects when `deadlineMs` passes or the process exits first.
 */
export async function waitUntil<T>(
  what: string,
  proc: SupervisedProcess,
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; diagnostics?: () => string },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastErr: unknown;
  for (;;) {
    if (proc.hasExited()) {
      throw new ServerStartError(`${what}: process exited before it was ready`, opts.diagnostics?.() ?? tailFile(proc.logFile), true);
    }
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      const why = lastErr instanceof Error ? ` (last probe error: ${lastErr.message})` : "";
      throw new ServerStartError(
        `${what}: not ready after ${Math.round(opts.timeoutMs / 1000)}s${why}`,
        opts.diagnostics?.() ?? tailFile(proc.logFile),
        false,
      );
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

export class ServerStartError extends Error {
  constructor(
    message: string,
    readonly logTail: string,
    readonly exitedEarly: boolean,
  ) {
    super(logTail ? `${message}\n--- log tail ---\n${logTail.trimEnd()}\n--- end of log tail ---` : message);
    this.name = "ServerStartError";
  }
}

const PORT_CLASH = /address already in use|EADDRINUSE|BindException|failed to bind|bind: |Could not create server TCP listening socket/i;

/**
 * Runs `attempt` up to `tries` times; retries only when the server died early with what looks
 * like a port clash (another process took the port between freePort() and the server's bind).
 */
export async function withPortRetry<T>(name: string, attempt: (n: number) => Promise<T>, tries = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt(i);
    } catch (e) {
      const retry = e instanceof ServerStartError && e.exitedEarly && PORT_CLASH.test(e.logTail) && i < tries;
      if (!retry) throw e;
      console.warn(`[infra] ${name}: port clash, retrying with new ports (${i}/${tries - 1})`);
    }
  }
}

/** Connects to 127.0.0.1:port, writes `send`, collects the reply until the peer closes or `until` matches. */
export function tcpExchange(
  port: number,
  send: string,
  opts: { until?: (reply: string) => boolean; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let reply = "";
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(reply);
    };
    sock.setTimeout(opts.timeoutMs ?? 2000, () => finish(new Error(`timeout talking to port ${port}`)));
    sock.on("connect", () => sock.write(send));
    sock.on("data", (d) => {
      reply += d.toString("utf8");
      if (opts.until?.(reply)) finish();
    });
    sock.on("end", () => finish());
    sock.on("error", (e) => finish(e));
  });
}

/** True once something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on("connect", () => done(true));
    sock.on("error", () => done(false));
  });
}

export interface MarkedProcess {
  pid: number;
  cmdline: string;
}

/**
 * Processes whose command line contains the marker. By default only this run's
 * (`switchboard-it-<RUN_TAG>-`), so parallel runs on one machine do not trip each other;
 * `allRuns: true` lists every `switchboard-it-` process.
 */
export function listMarkedProcesses(opts: { allRuns?: boolean } = {}): MarkedProcess[] {
  const needle = opts.allRuns ? MARKER : `${MARKER}${RUN_TAG}-`;
  const found: MarkedProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    } catch {
      continue;
    }
    if (!cmdline.includes(needle) || !pidAlive(pid)) continue;
    found.push({ pid, cmdline: cmdline.length > 300 ? `${cmdline.slice(0, 300)}…` : cmdline });
  }
  return found;
}

/** Throws, naming them, if any (this run's) `switchboard-it-` processes are still alive after `waitMs` (default 10 s). */
export async function assertNoOrphans(opts: { allRuns?: boolean; waitMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (opts.waitMs ?? 10_000);
  let left = listMarkedProcesses(opts);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = listMarkedProcesses(opts);
  }
  if (left.length > 0) {
    throw new Error(`orphan server processes still running:\n${left.map((p) => `  pid ${p.pid}: ${p.cmdline}`).join("\n")}`);
  }
}

/** Shared shape of the public start functions' result. */
export function handleOf<T extends object>(
  name: string,
  proc: SupervisedProcess,
  version: string,
  startMs: number,
  info: T,
): T & ServerHandle {
  return {
    ...info,
    name,
    version,
    pid: proc.pid,
    dir: proc.dir,
    startMs,
    stop: () => proc.stop(),
  };
}
