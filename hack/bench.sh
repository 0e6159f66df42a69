#!/usr/bin/env bash
# Benchmarks (not tests: they print figures and assert nothing about speed).
#
#   hack/bench.sh token   # /token throughput, p50/p99 latency and server RSS, warm and cold secrets
#   hack/bench.sh scale   # time until SCALE clients (default 1000) are Ready with Secrets, memory,
#                         # and a controller restart over them (writes and hash computations)
#   hack/bench.sh refresh # refresh-token grants per second (each one API-server read and
#                         # write), and what a sign-in costs in etcd
#   hack/bench.sh         # all three
#
# Everything runs on this machine: a local control plane, the release build of the operator
# as separate controller and server processes, wrk (Debian) as the closed-loop load
# generator and oha (crates.io, built once into ~/.cache/oauth-operator/tools) for the
# fixed-rate run, all on 127.0.0.1. env: CLIENTS (token bench, default 100), SCALE
# (default 1000), DURATION (seconds per run, default 10), CONNECTIONS (default 32),
# RATE (fixed-rate cold run, requests/s, default 40), ALGORITHMS (default "ES256 EdDSA RS256"),
# PROFILE=1 (sample the server with perf during each warm run and print where its user-space
# time goes; needs linux-perf from Debian).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

what=${1:-all}
CLIENTS=${CLIENTS:-100}
SCALE=${SCALE:-1000}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
RATE=${RATE:-40}
ALGORITHMS=${ALGORITHMS:-ES256 EdDSA RS256}

if ! command -v wrk >/dev/null; then
  echo "==> installing wrk (Debian package)"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
oha=$HOME/.cache/oauth-operator/tools/bin/oha
if [[ ! -x $oha ]]; then
  echo "==> building oha (crates.io) into ~/.cache/oauth-operator/tools, once (~8 min on 2 cores)"
  cargo install oha --locked --quiet --root "$HOME/.cache/oauth-operator/tools"
fi
bin_dir=$(hack/controlplane/build.sh)
echo "==> cargo build --release"
cargo build --release --quiet -p oauth-operator -p envtest --bins
B=$PWD/target/release/oauth-operator
work=$(mktemp -d /tmp/oauth-operator-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The server's CPU seconds so far, user and system, from /proc (clock ticks of 1/100 s).
cpu_seconds() { awk '{printf "%.2f %.2f", $14/100, $15/100}' "/proc/$1/stat"; }
# Runs the closed-loop load ($1 connections) against the server, printing wrk's figures and
# how the server's CPU time split between user space (our code, crypto, hyper) and the
# kernel (loopback TCP); with PROFILE=1 also its hottest user-space symbols.
drive() {
  read -r u0 s0 <<<"$(cpu_seconds "$server")"
  if [[ ${PROFILE:-0} == 1 ]]; then
    perf record -q -e cpu-clock -F 997 -p "$server" -o "$work/perf.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  taskset -c 1 wrk -t1 -c"$1" -d"${DURATION}s" -s "$work/token.lua" "$issuer" | grep RESULT
  if [[ ${PROFILE:-0} == 1 ]]; then
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  fi
  read -r u1 s1 <<<"$(cpu_seconds "$server")"
  python3 -c "u=$u1-$u0; s=$s1-$s0; print('    server CPU: user %.1f s, system %.1f s (%.0f%% kernel)' % (u, s, 100*s/max(u+s,0.01)))"
  if [[ ${PROFILE:-0} == 1 ]]; then
    perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol >"$work/perf.txt" 2>/dev/null || true
    python3 - "$work/perf.txt" "${PROFILE_TOP:-12}" <<'PY'
import re, sys
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"\s+([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if m:
        rows.append((float(m[1]), m[2], m[3], m[4].strip()))
# Where the time goes, by kind of work: the answer to "what bounds it".
kinds = [
    ("kernel (loopback TCP, epoll, scheduling)", lambda d, k, s: k == "k"),
    ("signature crypto (aws-lc / ring / dalek)", lambda d, k, s: re.search(r"ecp_|nistz|p256|bignum|bn_|BN_|aws_lc|ring_core|edwards25519|ed25519|curve25519|rsa|montinv|sha512", s, re.I)),
    ("argon2id", lambda d, k, s: re.search(r"argon2|blake2", s, re.I)),
    ("allocator (mimalloc) and memcpy", lambda d, k, s: re.search(r"^_?mi_|mimalloc|memmove|memcpy|memset", s)),
    ("HTTP (hyper, axum, tower)", lambda d, k, s: re.search(r"hyper|axum|tower|http::", s)),
    ("JSON, base64, SHA-256 (token and cache key)", lambda d, k, s: re.search(r"serde|base64|sha2|hmac", s)),
    ("tokio runtime", lambda d, k, s: re.search(r"tokio", s)),
]
totals = {name: 0.0 for name, _ in kinds}
other = 0.0
for pct, dso, k, sym in rows:
    for name, test in kinds:
        if test(dso, k, sym):
            totals[name] += pct
            break
    else:
        other += pct
print("    where the server's time went (perf, self time):")
for name, pct in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f"      {pct:5.1f}%  {name}")
print(f"      {other:5.1f}%  everything else")
print("    hottest symbols:")
for pct, dso, k, sym in rows[: int(sys.argv[2])]:
    print(f"      {pct:5.1f}%  [{k}] {sym[:110]}")
PY
  fi
}
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

echo "==> starting a local control plane"
"$PWD/target/release/envtest" --dir "$work/cp" --crds crds/crds.yaml >"$work/cp.log" 2>&1 &
pids+=($!)
KC=$work/cp/kubeconfig
kubectl() { "$bin_dir/kubectl" --kubeconfig "$KC" "$@"; }
for _ in $(seq 1 240); do
  [[ -f $KC ]] && kubectl get --raw /readyz >/dev/null 2>&1 && kubectl get crd oauthclients.oauth-operator.dev >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl create namespace bench >/dev/null

port=$(free_port)
issuer="http://127.0.0.1:$port"
common=(--namespace bench --operator-namespace bench --issuer "$issuer")

start_controller() { # $1: RUST_LOG, $2: extra args
  RUST_LOG=${1:-info} "$B" --kubeconfig "$KC" controller "${common[@]}" --health-listen 127.0.0.1:0 ${2:-} >>"$work/controller.log" 2>&1 &
  controller=$!
  pids+=("$controller")
}
start_server() { # $1: extra args; $2: CPUs (default core 0; the load generator gets core 1)
  taskset -c "${2:-0}" "$B" --kubeconfig "$KC" server "${common[@]}" --listen "127.0.0.1:$port" $1 >>"$work/server.log" 2>&1 &
  server=$!
  pids+=("$server")
  for _ in $(seq 1 120); do curl -fsS "$issuer/readyz" >/dev/null 2>&1 && return; sleep 0.25; done
  echo "server not ready" >&2; exit 1
}

apply_clients() { # $1: count, $2: name prefix
  for i in $(seq 1 "$1"); do
    printf 'apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: %s-%d\nspec:\n  scopes: [read]\n---\n' "$2" "$i"
  done | kubectl apply -n bench --server-side -f - >/dev/null
}

wait_ready() { # $1: expected count of Ready clients
  while true; do
    ready=$(kubectl get oauthclients -n bench -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
    [[ $ready -ge $1 ]] && return
    sleep 0.5
  done
}

token_bench() {
  echo "==> token bench: $CLIENTS clients"
  apply_clients "$CLIENTS" tok
  wait_ready "$CLIENTS"
  kubectl get secrets -n bench -l app.kubernetes.io/managed-by=oauth-operator,oauth-operator.dev/client \
    -o jsonpath='{range .items[*]}{.data.client_id}{" "}{.data.client_secret}{"\n"}{end}' |
    while read -r id secret; do
      printf '%s:%s' "$(echo "$id" | base64 -d)" "$(echo "$secret" | base64 -d)" | base64 -w0; echo
    done >"$work/basic.txt"
  cat >"$work/token.lua" <<'LUA'
local creds, i = {}, 0
for line in io.lines(os.getenv("BASIC_FILE")) do creds[#creds + 1] = line end
request = function()
  i = i % #creds + 1
  return wrk.format("POST", "/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. creds[i],
  }, "grant_type=client_credentials")
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests))
end
LUA
  export BASIC_FILE=$work/basic.txt

  for alg in $ALGORITHMS; do
    # Each algorithm gets its own signing-key Secret, created by a controller started for it.
    kill -TERM "$controller"; wait "$controller" 2>/dev/null || true
    keys=keys-$(echo "$alg" | tr '[:upper:]' '[:lower:]')
    start_controller info "--signing-algorithm $alg --signing-key-secret $keys"
    for _ in $(seq 1 100); do kubectl get secret -n bench "$keys" >/dev/null 2>&1 && break; sleep 0.2; done
    start_server "--signing-key-secret $keys"
    # Warm every client once (one argon2 check each), then measure the warm path.
    while read -r b; do curl -fsS -o /dev/null -H "Authorization: Basic $b" -d grant_type=client_credentials "$issuer/token"; done <"$work/basic.txt"
    echo "--- warm secrets, $alg, server pinned to 1 core, wrk $CONNECTIONS connections on the other"
    drive "$CONNECTIONS"
    echo "    server RSS ${CLIENTS} clients: $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"
    kill -TERM "$server"; wait "$server" 2>/dev/null || true
  done
  kill -TERM "$controller"; wait "$controller" 2>/dev/null || true
  start_controller

  start_server "--verified-cache-size 0"
  echo "--- cold secrets (every request pays argon2id), ES256, 1 connection"
  drive 1
  echo "--- cold secrets, 4 connections (argon2 bounded by --max-concurrent-hashes 4, one core)"
  drive 4
  echo "    server RSS: $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"
  kill -TERM "$server"; wait "$server" 2>/dev/null || true

  # The fixed-rate run is about the machine, not one core: argon2 runs on both.
  start_server "--verified-cache-size 0" 0,1
  echo "--- cold secrets at a fixed $RATE requests/s, server on both cores (oha, latency corrected for coordinated omission)"
  first=$(head -1 "$work/basic.txt")
  taskset -c 1 "$oha" --no-tui --output-format json -z "${DURATION}s" -q "$RATE" ${OHA_FLAGS---latency-correction} -c "${OHA_CONNECTIONS:-40}" \
    -m POST -H "Authorization: Basic $first" -T application/x-www-form-urlencoded -d grant_type=client_credentials \
    "$issuer/token" >"$work/oha.json"
  python3 - "$work/oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p, codes = r["summary"], r["latencyPercentiles"], r.get("statusCodeDistribution", {})
print("RESULT rps=%.1f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f statuses=%s" % (
    s["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000, s["slowest"] * 1000, codes))
PY
  echo "    server RSS: $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
  kubectl delete oauthclients -n bench --all --wait=true >/dev/null
}

scale_bench() {
  echo "==> scale bench: $SCALE clients applied at once"
  start=$(date +%s.%N)
  apply_clients "$SCALE" scale
  wait_ready "$SCALE"
  while [[ $(kubectl get secrets -n bench -l oauth-operator.dev/client -o name | wc -l) -lt $SCALE ]]; do sleep 0.5; done
  end=$(date +%s.%N)
  printf -- "--- %d clients Ready with their Secrets in %s s\n" "$SCALE" "$(python3 -c "print(round($end - $start, 1))")"
  curl -fsS "$issuer/metrics" | grep '^oauth_operator_indexed_clients' || true
  echo "    controller RSS: $(rss_mib "$controller") MiB (peak $(hwm_mib "$controller") MiB)"
  echo "    server RSS:     $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"

  echo "--- controller restart over $SCALE Ready clients"
  before=$(kubectl get secrets,oauthclientverifiers,oauthclients -n bench -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}' | sort)
  kill -TERM "$controller"; wait "$controller" 2>/dev/null || true
  : >"$work/controller.log"
  start_controller "info,oauth_operator=debug"
  # Wait until the new controller has reconciled every client once.
  while [[ $(grep -c 'reconciled' "$work/controller.log" || true) -lt $SCALE ]]; do sleep 0.5; done
  after=$(kubectl get secrets,oauthclientverifiers,oauthclients -n bench -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}' | sort)
  changed=$(diff <(echo "$before") <(echo "$after") | grep -c '^>' || true)
  hashes=$(grep -c 'argon2:' "$work/controller.log" || true)
  echo "    objects rewritten: $changed; argon2 computations: $hashes"
}

refresh_bench() {
  echo "==> refresh bench: ${SESSIONS:-20} sign-ins, ${REFRESHES:-50} refreshes each, ${REFRESH_CONNECTIONS:-8} at a time"
  local hash
  hash=$(printf 'bench-password-1\n' | "$B" hash-password)
  cat <<YAML | kubectl apply -n bench -f - >/dev/null
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthUser
metadata: {name: bench-user}
spec: {passwordHash: '$hash', groups: [bench]}
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {name: bench-web}
spec:
  clientId: bench-web
  type: public
  grantTypes: [authorization_code, refresh_token]
  refreshCount: Unlimited
  redirectUris: ["http://127.0.0.1:9/cb"]
YAML
  kubectl wait -n bench --for=condition=Ready oauthclient/bench-web --timeout=60s >/dev/null
  sleep 2 # the server's watch
  CONNECTIONS=${REFRESH_CONNECTIONS:-8} python3 hack/lib/refresh_bench.py "$issuer" bench-web "http://127.0.0.1:9/cb" bench-user bench-password-1
  kubectl get oauthgrants -n bench -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
sizes = [len(json.dumps(i, separators=(",", ":"))) for i in items]
avg = sum(sizes) / max(len(sizes), 1)
print("    etcd: %d OAuthGrants, %.0f bytes each as JSON (~%.0f KiB per thousand signed-in sessions); one write per sign-in and per refresh, none per access token" % (len(items), avg, avg * 1000 / 1024))'
  echo "    server RSS: $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"
}

start_controller
if [[ $what == token || $what == all ]]; then token_bench; fi
if [[ $what == refresh || $what == all ]]; then
  [[ -n ${server:-} ]] && kill -0 "$server" 2>/dev/null || start_server "" 0,1
  refresh_bench
fi
if [[ $what == scale || $what == all ]]; then
  [[ -n ${server:-} ]] && kill -0 "$server" 2>/dev/null || start_server ""
  scale_bench
fi
