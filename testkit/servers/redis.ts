import { performance } from "node:perf_hooks";
import { handleOf, makeRunDir, freePort, spawnSupervised, tcpExchange, waitUntil, withPortRetry, type ServerHandle } from "./process.js";
import { requireBinary } from "./paths.js";

export interface RedisHandle extends ServerHandle {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly host: string;
  readonly port: number;
}

/**
 * Starts redis-server on a free loopback port, no persistence; ready once PING answers PONG.
 * `port`: try this port first (falls back to a free one if it is taken).
 */
export async function startRedis(opts: { timeoutMs?: number; port?: number } = {}): Promise<RedisHandle> {
  const bin = requireBinary("redis-server");
  return withPortRetry("redis", async (attempt) => {
    const dir = makeRunDir("redis");
    const port = attempt === 1 && opts.port ? opts.port : await freePort();
    const t0 = performance.now();
    const proc = await spawnSupervised({
      name: "redis",
      dir,
      command: bin,
      args: [
        "--port", String(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", dir,
        "--logfile", "",
        // keep argv (and so the switchboard-it- marker) visible to pgrep
        "--set-proc-title", "no",
        "--daemonize", "no",
        "--protected-mode", "yes",
      ],
      graceSeconds: 5,
    });
    try {
      await waitUntil(
        "redis",
        proc,
        async () => ((await tcpExchange(port, "PING\r\n", { until: (r) => r.includes("\r\n") })).startsWith("+PONG") ? true : undefined),
        { timeoutMs: opts.timeoutMs ?? 20_000, intervalMs: 50 },
      );
      const info = await tcpExchange(port, "INFO server\r\n", { until: (r) => /redis_version:[^\r\n]+\r\n/.test(r) && r.endsWith("\r\n\r\n") });
      const version = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? "unknown";
      return handleOf("redis", proc, version, performance.now() - t0, { url: `redis://127.0.0.1:${port}`, host: "127.0.0.1", port });
    } catch (e) {
      await proc.stop();
      throw e;
    }
  });
}
