// Where the server binaries and the Cassandra jars live. Shared by the server starters and
// scripts/ensure-infra.ts (which must stay fast: file checks only, no apt, no `java -version`
// unless no JDK 17 is found by path).
import { execFileSync } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const DEFAULT_CASSANDRA_VERSION = "5.0.8";

export function cassandraVersion(): string {
  return process.env.SWITCHBOARD_CASSANDRA_VERSION || DEFAULT_CASSANDRA_VERSION;
}

/** `${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/cassandra-<version>/lib` (filled by scripts/install-infra.sh). */
export function cassandraLibDir(version = cassandraVersion()): string {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(cache, "switchboard", `cassandra-${version}`, "lib");
}

export function cassandraInstalled(version = cassandraVersion()): boolean {
  return existsSync(path.join(cassandraLibDir(version), `cassandra-all-${version}.jar`));
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds a binary on PATH or in /usr/sbin, /usr/bin (Debian puts nats-server in /usr/sbin). */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin"];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

export function requireBinary(name: string): string {
  const p = findBinary(name);
  if (!p) throw new Error(`${name} not found: run scripts/install-infra.sh`);
  return p;
}

function javaMajor(java: string): number | undefined {
  try {
    const out = execFileSync(java, ["-version"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return parseJavaMajor(out);
  } catch (e) {
    const err = e as { stderr?: string };
    return err.stderr ? parseJavaMajor(err.stderr) : undefined;
  }
}

function parseJavaMajor(text: string): number | undefined {
  const m = /version "(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return undefined;
  const major = Number(m[1]);
  return major === 1 ? Number(m[2]) : major;
}

let cachedJava: string | null | undefined;

/**
 * A Java 17 `java` executable (Cassandra 5.0 supports JDK 11 and 17; we use 17).
 * Order: $SWITCHBOARD_JAVA, $JAVA_HOME/bin/java, /usr/lib/jvm/java-17-openjdk-*, `java` on PATH.
 */
export function findJava17(): string | undefined {
  if (cachedJava !== undefined) return cachedJava ?? undefined;
  const candidates: string[] = [];
  if (process.env.SWITCHBOARD_JAVA) candidates.push(process.env.SWITCHBOARD_JAVA);
  if (process.env.JAVA_HOME) candidates.push(path.join(process.env.JAVA_HOME, "bin", "java"));
  try {
    for (const d of readdirSync("/usr/lib/jvm")) {
      if (/^(java-17-openjdk|openjdk-17|temurin-17)/.test(d)) candidates.push(path.join("/usr/lib/jvm", d, "bin", "java"));
    }
  } catch {
    // no /usr/lib/jvm
  }
  const onPath = findBinary("java");
  if (onPath) candidates.push(onPath);
  for (const c of candidates) {
    if (!isExecutable(c)) continue;
    // Debian's JVM dirs are named by major version: trust the name, skip the `java -version` spawn.
    if (/\/usr\/lib\/jvm\/java-17-openjdk[^/]*\/bin\/java$/.test(c) || javaMajor(c) === 17) {
      cachedJava = c;
      return c;
    }
  }
  cachedJava = null;
  return undefined;
}

export function requireJava17(): string {
  const j = findJava17();
  if (!j) throw new Error("no Java 17 runtime found: run scripts/install-infra.sh (or set SWITCHBOARD_JAVA)");
  return j;
}

export const ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar";

/** Debian's Chromium, driven by the browser tests through playwright-core (never a downloaded browser). */
export const CHROMIUM = "/usr/bin/chromium";

/** What is missing for the integration servers and the browser tests (empty when all are present). */
export function missingInfra(): string[] {
  const missing: string[] = [];
  if (!existsSync(ZOOKEEPER_JAR)) missing.push("zookeeper");
  if (!findBinary("nats-server")) missing.push("nats-server");
  if (!findBinary("redis-server")) missing.push("redis-server");
  if (!findJava17()) missing.push("java17");
  if (!cassandraInstalled()) missing.push(`cassandra-${cassandraVersion()}`);
  if (!existsSync(CHROMIUM)) missing.push("chromium");
  return missing;
}
