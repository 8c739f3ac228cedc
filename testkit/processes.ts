// Runs `switchboard <role>` as a real child process for tests, and stops it afterwards.
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";

export interface MeshProcess {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  stop(): Promise<number | string>;
}

/** `nodeArgs`: extra node flags (e.g. --cpu-prof, which NODE_OPTIONS does not accept). */
export function spawnSwitchboard(args: readonly string[], env: Record<string, string>, nodeArgs: readonly string[] = []): MeshProcess {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "cmd/switchboard.ts", ...args], {
    // Metrics on any free port: tests run meshes side by side, the default 9464 is one port.
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", SWITCHBOARD_LOG_LEVEL: "warn", SWITCHBOARD_METRICS_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return {
    child,
    output: () => out,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        const r = await exited;
        clearTimeout(timer);
        return r;
      }
      return exited;
    },
  };
}

/** A loopback port that nothing listens on (bound, read, released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
