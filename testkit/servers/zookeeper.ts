import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { handleOf, makeRunDir, freePort, spawnSupervised, tailFile as tail, tcpExchange, waitUntil, withPortRetry, type ServerHandle } from "./process.js";
import { requireJava17, ZOOKEEPER_JAR } from "./paths.js";

export interface ZooKeeperHandle extends ServerHandle {
  /** 127.0.0.1:PORT */
  readonly connectString: string;
  readonly host: string;
  readonly port: number;
}

/**
 * Starts a standalone ZooKeeper (Debian's zookeeper.jar, whose manifest Class-Path pulls in its
 * deps) on a free loopback port. Ready once the `srvr` four-letter word reports a version
 * (`ruok` answers before the server serves). Sessions may be as short as 1 s.
 */
export async function startZooKeeper(opts: { timeoutMs?: number } = {}): Promise<ZooKeeperHandle> {
  if (!existsSync(ZOOKEEPER_JAR)) throw new Error(`${ZOOKEEPER_JAR} not found: run scripts/install-infra.sh`);
  const java = requireJava17();
  return withPortRetry("zookeeper", async () => {
    const dir = makeRunDir("zookeeper");
    const port = await freePort();
    const cfg = path.join(dir, "zoo.cfg");
    writeFileSync(
      cfg,
      [
        "tickTime=500",
        "initLimit=10",
        "syncLimit=5",
        `dataDir=${path.join(dir, "data")}`,
        `clientPort=${port}`,
        "clientPortAddress=127.0.0.1",
        "maxClientCnxns=0",
        "minSessionTimeout=1000",
        "maxSessionTimeout=60000",
        "admin.enableServer=false",
        "4lw.commands.whitelist=srvr,ruok,mntr",
        "standaloneEnabled=true",
        "",
      ].join("\n"),
    );
    // slf4j-simple (libslf4j-java, a dependency of libzookeeper-java) writes the server log to a file.
    const logFile = path.join(dir, "zookeeper.log");
    const classpath = [dir, ZOOKEEPER_JAR, "/usr/share/java/slf4j-simple.jar"].filter((p) => existsSync(p)).join(":");
    const t0 = performance.now();
    const proc = await spawnSupervised({
      name: "zookeeper",
      dir,
      command: java,
      args: [
        "-Xms32m",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.net.preferIPv4Stack=true",
        `-Djava.io.tmpdir=${dir}`,
        "-Dzookeeper.jmx.log4j.disable=true",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
        `-Dorg.slf4j.simpleLogger.logFile=${logFile}`,
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        `-Dzookeeper.log.dir=${dir}`,
        "-cp",
        classpath,
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        cfg,
      ],
      graceSeconds: 5,
    });
    const diagnostics = () => `${proc.logFile}:\n${tail(proc.logFile)}\n${logFile}:\n${tail(logFile)}`;
    try {
      const srvr = await waitUntil(
        "zookeeper",
        proc,
        async () => {
          const r = await tcpExchange(port, "srvr");
          return r.includes("Zookeeper version") ? r : undefined;
        },
        { timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 100, diagnostics },
      );
      // Debian's build reports e.g. "3.8.0-${mvngit.commit.id}, built on ...": keep the release number.
      const version = /Zookeeper version: (\d+(?:\.\d+)+)/.exec(srvr)?.[1] ?? "unknown";
      return handleOf("zookeeper", proc, version, performance.now() - t0, {
        connectString: `127.0.0.1:${port}`,
        host: "127.0.0.1",
        port,
      });
    } catch (e) {
      await proc.stop();
      throw e;
    }
  });
}
