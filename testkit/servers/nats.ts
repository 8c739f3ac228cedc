import { performance } from "node:perf_hooks";
import path from "node:path";
import { handleOf, makeRunDir, freePorts, spawnSupervised, tailFile as tail, waitUntil, withPortRetry, type ServerHandle } from "./process.js";
import { requireBinary } from "./paths.js";

export interface NatsHandle extends ServerHandle {
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** HTTP monitoring port (/healthz, /varz, /jsz). */
  readonly monitorPort: number;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/** Starts nats-server with JetStream on free loopback ports; ready once /healthz says ok. */
export async function startNats(opts: { timeoutMs?: number } = {}): Promise<NatsHandle> {
  const bin = requireBinary("nats-server");
  return withPortRetry("nats", async () => {
    const dir = makeRunDir("nats");
    const [port, monitorPort] = (await freePorts(2)) as [number, number];
    const t0 = performance.now();
    const proc = await spawnSupervised({
      name: "nats",
      dir,
      command: bin,
      args: [
        "-a", "127.0.0.1",
        "-p", String(port),
        "-m", String(monitorPort),
        "-js",
        "-sd", path.join(dir, "jetstream"),
        "-l", path.join(dir, "nats.log"),
      ],
      graceSeconds: 5,
    });
    const diagnostics = () => `${proc.logFile}:\n` + tail(proc.logFile) + `\n${path.join(dir, "nats.log")}:\n` + tail(path.join(dir, "nats.log"));
    try {
      await waitUntil(
        "nats",
        proc,
        async () => {
          const h = (await getJson(`http://127.0.0.1:${monitorPort}/healthz`)) as { status?: string };
          return h.status === "ok" ? true : undefined;
        },
        { timeoutMs: opts.timeoutMs ?? 20_000, intervalMs: 50, diagnostics },
      );
      const varz = (await getJson(`http://127.0.0.1:${monitorPort}/varz`)) as { version?: string };
      return handleOf("nats", proc, varz.version ?? "unknown", performance.now() - t0, {
        url: `nats://127.0.0.1:${port}`,
        host: "127.0.0.1",
        port,
        monitorPort,
      });
    } catch (e) {
      await proc.stop();
      throw e;
    }
  });
}
