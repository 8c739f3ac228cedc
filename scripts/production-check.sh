#!/usr/bin/env bash
# The production install, proved without Docker (CI has no engine): on a fresh copy of the
# repository, build with the dev dependencies, then install a second copy with production
# dependencies only plus the compiled output (what the Dockerfile's runtime stage holds), start
# the embedded mesh from it, answer /healthz, create a link over REST and follow it, and stop on
# SIGTERM with exit 0. Any failing step prints what it saw and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false

work=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-prodcheck.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { echo "[production-check] $*"; }
fail() {
  echo "[production-check] FAILED: $*" >&2
  if [ -f "$work/mesh.log" ]; then
    echo "[production-check] --- mesh output" >&2
    tail -n 60 "$work/mesh.log" >&2
  fi
  exit 1
}
run() { # run LOG CMD...: runs CMD quietly, shows its output only when it fails
  local log="$work/$1.log"; shift
  local rc=0
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$log" >&2; fail "$* (exit $rc)"; }
}

step "Dockerfile and compose describe the same install (no engine here to build them)"
grep -q '^RUN npm run build$' Dockerfile || fail "Dockerfile does not build with npm run build"
grep -q 'npm ci --omit=dev --ignore-scripts' Dockerfile || fail "Dockerfile runtime stage does not install with npm ci --omit=dev --ignore-scripts"
grep -q '^ENTRYPOINT \["node", "dist/cmd/switchboard.js"\]$' Dockerfile || fail "Dockerfile ENTRYPOINT is not node dist/cmd/switchboard.js"
grep -q '^USER node$' Dockerfile || fail "Dockerfile does not run as the non-root user node"
while read -r src; do
  [ -e "$src" ] || fail "Dockerfile copies $src, which does not exist"
done < <(grep '^COPY ' Dockerfile | grep -v -- '--from=' | sed 's/^COPY //' | awk '{ for (i = 1; i < NF; i++) print $i }')
if grep -n 'tsx\|\.ts"' docker-compose.yml; then fail "docker-compose.yml runs TypeScript (tsx is a dev dependency)"; fi

step "fresh copy of the working tree (tracked and unignored files; no node_modules, no dist)"
mkdir -p "$work/build" "$work/runtime"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
  | tar -C "$repo" --null -T - -cf - | tar -C "$work/build" -xf -
[ ! -e "$work/build/node_modules" ] || fail "the copy has node_modules"

step "build copy: npm ci + npm run build"
(cd "$work/build" && run build-install npm ci --prefer-offline --loglevel=error)
(cd "$work/build" && run build npm run build)
[ -f "$work/build/dist/cmd/switchboard.js" ] || fail "npm run build did not write dist/cmd/switchboard.js"

step "runtime copy: package files + dist only, npm ci --omit=dev --ignore-scripts"
cp "$work/build/package.json" "$work/build/package-lock.json" "$work/runtime/"
cp -R "$work/build/dist" "$work/runtime/dist"
(cd "$work/runtime" && NODE_ENV=production run runtime-install npm ci --omit=dev --ignore-scripts --prefer-offline --loglevel=error)
for dev in tsx typescript vitest esbuild @bufbuild/buf @bufbuild/protoc-gen-es; do
  [ ! -e "$work/runtime/node_modules/$dev" ] || fail "dev dependency $dev is installed in the runtime copy"
done
sources=$(cd "$work/runtime" && find . -path ./node_modules -prune -o -name '*.ts' -print | head -5)
[ -z "$sources" ] || fail "TypeScript sources in the runtime copy: $sources"

# HTTP through Node (curl is not on every CI machine): prints the status, the Location, the body.
http() { # http METHOD URL [JSON_BODY [BEARER_TOKEN]]
  node -e '
    const [method, url, body, token] = process.argv.slice(1);
    const headers = {};
    if (body) headers["content-type"] = "application/json";
    if (token) headers.authorization = `Bearer ${token}`;
    fetch(url, { method, headers, body: body || undefined, redirect: "manual", signal: AbortSignal.timeout(5000) }).then(
      async (r) => process.stdout.write(`${r.status}\n${r.headers.get("location") ?? ""}\n${await r.text()}`),
      (e) => { process.stderr.write(`${method} ${url}: ${e.cause?.code ?? e.message}\n`); process.exit(1); },
    );' "$@"
}
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
port=$(free_port)
base="http://127.0.0.1:$port"
# Only the settings below: nothing inherited from the caller's environment changes what is proved.
for v in $(env | grep -o '^SWITCHBOARD_[A-Z0-9_]*' || true); do unset "$v"; done
export NODE_ENV=production SWITCHBOARD_ENGINE=memory SWITCHBOARD_GATEWAY_HOST=127.0.0.1 \
  SWITCHBOARD_GATEWAY_PORT="$port" SWITCHBOARD_PUBLIC_BASE_URL="$base" SWITCHBOARD_METRICS_PORT=off \
  SWITCHBOARD_LOG_LEVEL=warn SWITCHBOARD_SHUTDOWN_GRACE_MS=5000
cd "$work/runtime"

step "start: node dist/cmd/switchboard.js all (gateway on $base)"
node dist/cmd/switchboard.js all >"$work/mesh.log" 2>&1 &
pid=$!
healthy=""
for _ in $(seq 1 150); do
  kill -0 "$pid" 2>/dev/null || fail "the mesh exited before answering /healthz"
  if [ "$(http GET "$base/healthz" 2>/dev/null | head -n 1 || true)" = "200" ]; then healthy=1; break; fi
  sleep 0.2
done
[ -n "$healthy" ] || fail "/healthz did not answer 200 within 30 s"

step "dev token, create a link over REST, follow it"
token=$(node dist/cmd/switchboard.js dev-token production-check 2>"$work/dev-token.err") \
  || { cat "$work/dev-token.err" >&2; fail "dev-token"; }
long_url="https://example.com/production-check?at=$(date +%s)"
answer=$(http POST "$base/api/v1/shorten" "{\"long_url\":\"$long_url\"}" "$token") || fail "POST /api/v1/shorten: no answer"
status=$(printf '%s\n' "$answer" | sed -n 1p)
body=$(printf '%s\n' "$answer" | sed -n '3,$p')
[ "$status" = "200" ] || [ "$status" = "201" ] || fail "POST /api/v1/shorten answered $status: $body"
code=$(printf '%s' "$body" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const c=JSON.parse(s).code;if(!c)process.exit(1);console.log(c)})') \
  || fail "no code in the shorten answer: $body"
answer=$(http GET "$base/$code") || fail "GET /$code: no answer"
followed="$(printf '%s\n' "$answer" | sed -n 1p) $(printf '%s\n' "$answer" | sed -n 2p)"
[ "$followed" = "302 $long_url" ] || fail "GET /$code answered \"$followed\", expected \"302 $long_url\""

step "stop: SIGTERM, exit 0 within the grace"
kill -TERM "$pid"
exited=""
for _ in $(seq 1 50); do
  if ! kill -0 "$pid" 2>/dev/null; then exited=1; break; fi
  sleep 0.2
done
[ -n "$exited" ] || fail "still running 10 s after SIGTERM"
set +e; wait "$pid"; rc=$?; set -e
pid=""
[ "$rc" = "0" ] || fail "exit status $rc after SIGTERM"
step "ok: built, installed without dev dependencies, served /healthz and a redirect, stopped cleanly"
