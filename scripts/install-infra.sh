#!/usr/bin/env bash
# Installs what the real-server integration tests need (see testkit/README.md):
#   - Debian packages: zookeeper, nats-server, redis-server, a Java 17 runtime (+ maven to fetch Cassandra),
#     chromium (the browser tests drive it with playwright-core; no browser is downloaded)
#   - Apache Cassandra (cassandra-all + runtime deps from Maven Central) into
#     ${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/cassandra-<version>/lib
# Idempotent and silent when everything is already there. Only calls apt when something is missing.
# Env: SWITCHBOARD_CASSANDRA_VERSION (default 5.0.8).
set -euo pipefail

CASSANDRA_VERSION="${SWITCHBOARD_CASSANDRA_VERSION:-5.0.8}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/switchboard"
CASSANDRA_HOME="$CACHE_ROOT/cassandra-$CASSANDRA_VERSION"
CASSANDRA_LIB="$CASSANDRA_HOME/lib"

started=$(date +%s)
did_something=0
log() { echo "[install-infra] $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else log "not root and no sudo: cannot apt-get install"; fi
fi

have_cmd() { # a binary on PATH or in the usual Debian locations (/usr/sbin is not on a normal user's PATH)
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

# Prints the path of a Java 17 'java' if one exists (Cassandra 5.0 runs on 11/17; we standardise on 17).
java17() {
  local j
  for j in ${SWITCHBOARD_JAVA:-} ${JAVA_HOME:+$JAVA_HOME/bin/java} /usr/lib/jvm/java-17-openjdk-*/bin/java "$(command -v java 2>/dev/null || true)"; do
    [ -n "$j" ] && [ -x "$j" ] || continue
    if "$j" -version 2>&1 | head -n1 | grep -Eq 'version "17[."]'; then echo "$j"; return 0; fi
  done
  return 1
}

missing=()
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
have_cmd nats-server || missing+=(nats-server)
have_cmd redis-server || missing+=(redis-server)
if ! java17 >/dev/null; then
  # bookworm's default JRE is 17; on other releases ask for 17 explicitly.
  if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then missing+=(openjdk-17-jre-headless); else missing+=(default-jre-headless); fi
fi
if [ ! -f "$CASSANDRA_LIB/cassandra-all-$CASSANDRA_VERSION.jar" ] && ! have_cmd mvn; then missing+=(maven); fi
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -gt 0 ]; then
  did_something=1
  log "apt-get install: ${missing[*]}"
  t0=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "apt-get install done in $(( $(date +%s) - t0 ))s"
  if ! java17 >/dev/null; then
    # default-jre-headless may have brought a different major version
    $SUDO apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null || true
    java17 >/dev/null || { log "no Java 17 runtime available after install"; exit 1; }
  fi
fi

if [ ! -f "$CASSANDRA_LIB/cassandra-all-$CASSANDRA_VERSION.jar" ]; then
  did_something=1
  log "fetching cassandra-all $CASSANDRA_VERSION and its runtime dependencies from Maven Central into $CASSANDRA_HOME"
  t0=$(date +%s)
  mkdir -p "$CACHE_ROOT"
  # leftovers of fetches killed hard (SIGKILL skips the EXIT trap)
  find "$CACHE_ROOT" -maxdepth 1 -name '.cassandra-*.partial.*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
  tmp=$(mktemp -d "$CACHE_ROOT/.cassandra-$CASSANDRA_VERSION.partial.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lib" "$tmp/pom"
  cat >"$tmp/pom/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>switchboard.testkit</groupId>
  <artifactId>cassandra-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$CASSANDRA_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  if ! (
    cd "$tmp/pom"
    mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/lib" &&
    mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION" -DoutputDirectory="$tmp/lib"
  ) >"$tmp/mvn.log" 2>&1; then
    cat "$tmp/mvn.log" >&2
    log "maven fetch failed"
    exit 1
  fi
  [ -f "$tmp/lib/cassandra-all-$CASSANDRA_VERSION.jar" ] || { log "maven did not produce cassandra-all-$CASSANDRA_VERSION.jar"; exit 1; }
  rm -rf "$tmp/pom" "$tmp/mvn.log"
  # Publish atomically: a half-done fetch stays in a *.partial.* dir and never looks complete.
  rm -rf "$CASSANDRA_HOME"
  if ! mv -T "$tmp" "$CASSANDRA_HOME" 2>/dev/null; then
    [ -f "$CASSANDRA_LIB/cassandra-all-$CASSANDRA_VERSION.jar" ] || { log "could not move $tmp to $CASSANDRA_HOME"; exit 1; }
    # another installer won the race; keep its copy
  fi
  trap - EXIT
  rm -rf "$tmp"
  log "cassandra $CASSANDRA_VERSION fetched ($(ls "$CASSANDRA_LIB" | wc -l) jars) in $(( $(date +%s) - t0 ))s"
fi

if [ "$did_something" = 1 ]; then
  log "all infra present (took $(( $(date +%s) - started ))s)"
fi
