import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import cassandra from "cassandra-driver";
import {
  handleOf,
  makeRunDir,
  freePort,
  freePorts,
  portOpen,
  spawnSupervised,
  tailFile,
  waitUntil,
  withPortRetry,
  type ServerHandle,
} from "./process.js";
import { cassandraInstalled, cassandraLibDir, cassandraVersion, requireJava17 } from "./paths.js";

export interface CassandraHandle extends ServerHandle {
  /** 127.0.0.1:PORT (cassandra-driver accepts host:port contact points). */
  readonly contactPoint: string;
  readonly host: string;
  /** CQL native transport port. */
  readonly port: number;
  readonly storagePort: number;
  readonly localDataCenter: string;
  /** Cassandra's own log (kept in dir; gone after stop()). */
  readonly systemLog: string;
}

export interface StartCassandraOptions {
  /** Default 150 s. */
  timeoutMs?: number;
  /** JVM max heap, default "1g". */
  heap?: string;
  /** CQL port to try first (falls back to free ports if it is taken). */
  port?: number;
}

const LOCAL_DC = "datacenter1";

function yaml(dir: string, storagePort: number, nativePort: number): string {
  const d = (sub: string) => path.join(dir, "data", sub);
  // Single node, loopback only, nothing optional switched on. Key names are Cassandra 5.0's.
  return `cluster_name: switchboard-it
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: ${storagePort}
native_transport_port: ${nativePort}
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:${storagePort}"
data_file_directories:
  - ${d("data")}
commitlog_directory: ${d("commitlog")}
saved_caches_directory: ${d("saved_caches")}
hints_directory: ${d("hints")}
cdc_raw_directory: ${d("cdc_raw")}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
auto_snapshot: false
snapshot_before_compaction: false
incremental_backups: false
hinted_handoff_enabled: false
concurrent_compactors: 1
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_materialized_view_writes: 2
compaction_throughput: 0MiB/s
key_cache_size: 8MiB
counter_cache_size: 4MiB
file_cache_size: 64MiB
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
native_transport_max_threads: 32
trickle_fsync: false
cdc_enabled: false
storage_compatibility_mode: NONE
`;
}

function logbackXml(logFile: string): string {
  // Everything into one file in the temp dir; nothing on stdout.
  return `<configuration scan="false">
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.FileAppender">
    <file>${logFile}</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{1} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
  <logger name="io.netty" level="WARN"/>
  <logger name="net.openhft" level="WARN"/>
  <root level="INFO"><appender-ref ref="SYSTEMLOG"/></root>
</configuration>
`;
}

const ADD_EXPORTS = [
  "java.base/jdk.internal.misc",
  "java.management.rmi/com.sun.jmx.remote.internal.rmi",
  "java.management/com.sun.jmx.remote.security",
  "java.rmi/sun.rmi.registry",
  "java.rmi/sun.rmi.server",
  "java.sql/java.sql",
  "java.base/java.lang.ref",
  "jdk.unsupported/sun.misc",
];
const ADD_OPENS = [
  ...[
    "java.lang.module",
    "jdk.internal.loader",
    "jdk.internal.ref",
    "jdk.internal.reflect",
    "jdk.internal.math",
    "jdk.internal.module",
    "jdk.internal.util.jar",
    "sun.nio.ch",
    "java.io",
    "java.lang.reflect",
    "java.lang",
    "java.util",
    "java.nio",
  ].map((p) => `java.base/${p}`),
  "jdk.management/com.sun.management.internal",
];

/** Extra JVM flags (whitespace-separated) from SWITCHBOARD_IT_CASSANDRA_JVM_OPTS, for experiments. */
function extraJvmOptions(): string[] {
  return (process.env["SWITCHBOARD_IT_CASSANDRA_JVM_OPTS"] ?? "").split(/\s+/).filter(Boolean);
}

function jvmArgs(dir: string, libDir: string, heap: string): string[] {
  const conf = path.join(dir, "conf");
  const jamm = readdirSync(libDir).find((f) => /^jamm-.*\.jar$/.test(f));
  const extra = extraJvmOptions();
  // A collector chosen in the extra flags replaces the default one (the JVM refuses two).
  const gc = extra.some((o) => /^-XX:\+Use\w+GC$/.test(o)) ? [] : ["-XX:+UseG1GC", "-XX:+UseStringDeduplication"];
  return [
    "-Xms256m",
    `-Xmx${heap}`,
    "-Xss256k",
    ...gc,
    ...extra,
    "-XX:ReservedCodeCacheSize=128m",
    "-XX:MaxDirectMemorySize=512m",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Dchronicle.analytics.disable=true",
    "-Djdk.attach.allowAttachSelf=true",
    ...ADD_EXPORTS.flatMap((p) => ["--add-exports", `${p}=ALL-UNNAMED`]),
    ...ADD_OPENS.flatMap((p) => ["--add-opens", `${p}=ALL-UNNAMED`]),
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    ...(jamm ? [`-javaagent:${path.join(libDir, jamm)}`] : []),
    "-Dcassandra-foreground=yes",
    `-Dcassandra.config=file://${path.join(conf, "cassandra.yaml")}`,
    `-Dcassandra.storagedir=${path.join(dir, "data")}`,
    `-Dcassandra.logdir=${path.join(dir, "logs")}`,
    `-Dlogback.configurationFile=${path.join(conf, "logback.xml")}`,
    `-Djava.io.tmpdir=${path.join(dir, "tmp")}`,
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.superuser_setup_delay_ms=0",
    "-Dcassandra.ring_delay_ms=0",
    // no 2 s "announce shutdown" pause on stop (single node, nobody to tell)
    "-Dcassandra.shutdown_announce_in_ms=0",
    `-Dcassandra.triggers_dir=${path.join(dir, "triggers")}`,
    "-cp",
    `${conf}:${libDir}/*`,
    "org.apache.cassandra.service.CassandraDaemon",
  ];
}

async function releaseVersion(port: number): Promise<string | undefined> {
  if (!(await portOpen(port))) return undefined;
  const client = new cassandra.Client({
    contactPoints: [`127.0.0.1:${port}`],
    localDataCenter: LOCAL_DC,
    protocolOptions: { port },
    socketOptions: { connectTimeout: 3000, readTimeout: 5000 },
  });
  try {
    await client.connect();
    const rs = await client.execute("SELECT release_version FROM system.local");
    const v = rs.first()?.get("release_version") as string | undefined;
    return v ?? undefined;
  } finally {
    await client.shutdown().catch(() => {});
  }
}

/**
 * Starts a single-node Cassandra (jars from the install-infra cache, JDK 17) on free loopback
 * ports. Ready once a CQL client can run `SELECT release_version FROM system.local`.
 */
export async function startCassandra(opts: StartCassandraOptions = {}): Promise<CassandraHandle> {
  const version = cassandraVersion();
  if (!cassandraInstalled(version)) {
    throw new Error(`Cassandra ${version} jars not found in ${cassandraLibDir(version)}: run scripts/install-infra.sh`);
  }
  const java = requireJava17();
  const libDir = cassandraLibDir(version);
  return withPortRetry("cassandra", async (attempt) => {
    const dir = makeRunDir("cassandra");
    let [storagePort, nativePort] = (await freePorts(2)) as [number, number];
    if (attempt === 1 && opts.port) {
      nativePort = opts.port;
      if (storagePort === nativePort) storagePort = await freePort();
    }
    for (const sub of ["conf", "logs", "tmp", "data", "triggers"]) mkdirSync(path.join(dir, sub), { recursive: true });
    const systemLog = path.join(dir, "logs", "system.log");
    writeFileSync(path.join(dir, "conf", "cassandra.yaml"), yaml(dir, storagePort, nativePort));
    writeFileSync(path.join(dir, "conf", "logback.xml"), logbackXml(systemLog));
    const argFile = path.join(dir, "conf", "jvm.args");
    writeFileSync(argFile, jvmArgs(dir, libDir, opts.heap ?? "1g").join("\n") + "\n");
    const t0 = performance.now();
    const proc = await spawnSupervised({
      name: "cassandra",
      dir,
      command: java,
      args: [`@${argFile}`],
      logFile: path.join(dir, "logs", "cassandra.out"),
      graceSeconds: 20,
    });
    const diagnostics = () => {
      const out = tailFile(proc.logFile, 2000);
      return `${systemLog}:\n${tailFile(systemLog, 6000) || "(empty)"}` + (out ? `\n${proc.logFile}:\n${out}` : "");
    };
    try {
      const running = await waitUntil("cassandra", proc, () => releaseVersion(nativePort), {
        timeoutMs: opts.timeoutMs ?? 150_000,
        intervalMs: 500,
        diagnostics,
      });
      return handleOf("cassandra", proc, running, performance.now() - t0, {
        contactPoint: `127.0.0.1:${nativePort}`,
        host: "127.0.0.1",
        port: nativePort,
        storagePort,
        localDataCenter: LOCAL_DC,
        systemLog,
      });
    } catch (e) {
      await proc.stop();
      throw e;
    }
  });
}

