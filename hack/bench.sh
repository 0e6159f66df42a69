#!/usr/bin/env bash
# Benchmarks (not tests: they print figures and assert nothing about speed).
#
#   hack/bench.sh token   # the bare endpoint beside the project (warm tokens/s, p50/p99, the
#                         # ratio), the same with 1,000 OAuthResources and 10,000 grants in
#                         # the index (RESOURCES), the first token of every client on a new replica, a replica
#                         # restart under load, every signing algorithm, chosen (argon2) secrets
#   hack/bench.sh scale   # SCALE clients (default 10000) applied in parallel: time to Ready with
#                         # Secrets, where the CPU went, API writes per client, memory; then a
#                         # controller restart over them (writes, hash computations)
#   hack/bench.sh refresh # refresh-token grants per second (each one API-server read and
#                         # write), and what a sign-in costs in etcd
#   hack/bench.sh assertion # clients by ServiceAccount token beside clients by generated
#                         # secret, warm tokens/s and p99 (ASSERTION_CLIENTS, default 100)
#   hack/bench.sh         # all four
#
# Everything runs on this machine: a local control plane, the release build of the operator
# as separate controller and server processes, examples/bare_token.rs as the floor, wrk
# (Debian) as the closed-loop load generator, hack/lib/token_load.py for per-client runs,
# all on 127.0.0.1. env: CLIENTS (token bench, default 1000), SCALE (default 10000),
# APPLY_PARALLEL (parallel applies, default 8), KUBE_API_QPS / KUBE_API_BURST /
# MAX_RECONCILES (the controller's limits in the scale run, default 500 / 1000 / 64),
# DURATION (seconds per wrk run, default 10), CONNECTIONS (default 32), CHOSEN (argon2
# clients, default 20), RESTART_SECONDS (default 20), ALGORITHMS (default "ES256 EdDSA
# RS256"), PROFILE=1 (sample the server with perf during each warm run and print where its
# user-space time goes; in the scale run, profile the API server with pprof and the
# controller with perf for 30 s; needs linux-perf from Debian and go).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

what=${1:-all}
CLIENTS=${CLIENTS:-1000}
SCALE=${SCALE:-10000}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
ALGORITHMS=${ALGORITHMS:-ES256 EdDSA RS256}

if ! command -v wrk >/dev/null; then
  echo "==> installing wrk (Debian package)"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
bin_dir=$(hack/controlplane/build.sh)
echo "==> cargo build --release"
cargo build --release --quiet -p oauth-operator -p envtest --bins --example bare_token
B=$PWD/target/release/oauth-operator
work=$(mktemp -d /tmp/oauth-operator-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Copies its input to stderr and stdout. Not `tee /dev/stderr`: that reopens stderr, and
# when it is a file (`bench.sh >log 2>&1`) the reopening truncates everything before.
show() { while IFS= read -r line; do printf '%s\n' "$line" >&2; printf '%s\n' "$line"; done; }
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

wait_ready() { # $1: expected count of Ready clients, $2: name prefix
  python3 hack/lib/wait_ready.py "$1" "${2:-}" bench "$bin_dir/kubectl" --kubeconfig "$KC"
}

# Base64 `client_id:secret` per line, of every generated credentials Secret in bench.
basic_file() {
  kubectl get secrets -n bench -l app.kubernetes.io/managed-by=oauth-operator,oauth-operator.dev/client \
    -o jsonpath='{range .items[*]}{.data.client_id}{" "}{.data.client_secret}{"\n"}{end}' |
    while read -r id secret; do
      [[ -n $secret ]] || continue
      printf '%s:%s' "$(echo "$id" | base64 -d)" "$(echo "$secret" | base64 -d)" | base64 -w0; echo
    done
}
load() { taskset -c 1 python3 hack/lib/token_load.py "$@"; }
ratio() { python3 -c "import re,sys; g=lambda s,k: float(re.search(k+r'=([0-9.]+)', s)[1]); a,b=sys.argv[1],sys.argv[2]; print('    ratio project/bare: %.0f%% of the tokens/s; p99 %.2f ms against %.2f ms' % (100*g(a,'rps')/g(b,'rps'), g(a,'p99_ms'), g(b,'p99_ms')))" "$1" "$2"; }

# The wrk script: client credentials with HTTP Basic, round-robin over $BASIC_FILE; with
# ASSERTION_FILE set, with each line of it as the client_assertion instead (RFC 7523).
token_lua() {
  cat >"$work/token.lua" <<'LUA'
local creds, i = {}, 0
local assertions = os.getenv("ASSERTION_FILE")
for line in io.lines(assertions or os.getenv("BASIC_FILE")) do creds[#creds + 1] = line end
local jwt_bearer = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
request = function()
  i = i % #creds + 1
  if assertions then
    return wrk.format("POST", "/token", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, "grant_type=client_credentials&client_assertion_type=" .. jwt_bearer .. "&client_assertion=" .. creds[i])
  end
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
}

token_bench() {
  echo "==> token bench: $CLIENTS clients with generated secrets"
  apply_clients "$CLIENTS" tok
  wait_ready "$CLIENTS"
  basic_file >"$work/basic.txt"
  token_lua
  export BASIC_FILE=$work/basic.txt

  # The floor: the same HTTP stack, signing library and allocator, and nothing else.
  bare_port=$(free_port)
  taskset -c 0 "$PWD/target/release/examples/bare_token" "127.0.0.1:$bare_port" >"$work/bare.log" 2>&1 &
  server=$!
  pids+=("$server")
  for _ in $(seq 1 40); do curl -fsS "http://127.0.0.1:$bare_port/readyz" >/dev/null 2>&1 && break; sleep 0.25; done
  echo "--- bare endpoint (examples/bare_token.rs: parse the form, sign ES256), pinned to 1 core, wrk $CONNECTIONS connections on the other"
  bare=$(issuer="http://127.0.0.1:$bare_port" drive "$CONNECTIONS" | show | grep RESULT)
  kill -TERM "$server"; wait "$server" 2>/dev/null || true

  for alg in $ALGORITHMS; do
    # Each algorithm gets its own signing-key Secret, created by a controller started for it.
    kill -TERM "$controller"; wait "$controller" 2>/dev/null || true
    keys=keys-$(echo "$alg" | tr '[:upper:]' '[:lower:]')
    start_controller info "--signing-algorithm $alg --signing-key-secret $keys"
    for _ in $(seq 1 100); do kubectl get secret -n bench "$keys" >/dev/null 2>&1 && break; sleep 0.2; done
    start_server "--signing-key-secret $keys"
    if [[ $alg == ES256 ]]; then
      echo "--- first token of each of $CLIENTS clients on a replica just started, ES256, 32 client threads (Python, one connection each)"
      cold=$(load once "$issuer" "$work/basic.txt" --threads 32 | grep RESULT); echo "$cold"
      echo "--- the same clients again, now warm, same client"
      warm=$(load once "$issuer" "$work/basic.txt" --threads 32 | grep RESULT); echo "$warm"
      python3 -c "import re,sys; g=lambda s,k: float(re.search(k+r'=([0-9.]+)', s)[1]); c,w=sys.argv[1],sys.argv[2]; print('    cold/warm: %.0f%% of the tokens/s; p99 %.2f ms against %.2f ms' % (100*g(c,'rps')/g(w,'rps'), g(c,'p99_ms'), g(w,'p99_ms')))" "$cold" "$warm"
    fi
    echo "--- warm, $alg, server pinned to 1 core, wrk $CONNECTIONS connections on the other"
    result=$(drive "$CONNECTIONS" | show | grep RESULT)
    [[ $alg == ES256 ]] && ratio "$result" "$bare"
    [[ $alg == ES256 ]] && tenancy_bench "$result"
    echo "    server RSS ${CLIENTS} clients: $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"
    if [[ $alg == ES256 ]]; then restart_under_load "--signing-key-secret $keys"; fi
    kill -TERM "$server"; wait "$server" 2>/dev/null || true
  done
  kill -TERM "$controller"; wait "$controller" 2>/dev/null || true
  start_controller
  chosen_bench
  kubectl delete oauthclients -n bench --all --wait=true >/dev/null
}

# Clients without a secret, by the ServiceAccount token Kubernetes gives a pod (RFC 7523
# assertion, checked against the cluster issuer's keys and the ServiceAccount's UID),
# side by side with as many clients with generated secrets, same server, same run.
assertion_bench() {
  local n=${ASSERTION_CLIENTS:-100}
  echo "==> ServiceAccount-token clients against generated-secret clients: $n of each"
  for i in $(seq 1 "$n"); do
    printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: workload-%d\n---\n' "$i"
    printf 'apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: sa-%d\nspec:\n  scopes: [read]\n  authentication:\n    serviceAccounts: [{name: workload-%d}]\n---\n' "$i" "$i"
  done | kubectl apply -n bench --server-side -f - >/dev/null
  apply_clients "$n" sec
  wait_ready "$n" sa-
  wait_ready "$n" sec-
  for i in $(seq 1 "$n"); do
    # One per line: kubectl ends its output with none.
    printf '%s\n' "$(kubectl create token -n bench "workload-$i" --audience "$issuer" --duration 1h)"
  done >"$work/assertions.txt"
  basic_file | head -n "$n" >"$work/secrets.txt"
  token_lua
  start_server ""
  # One by hand first: a run of refusals measures nothing.
  local first
  first=$(curl -s -d grant_type=client_credentials \
    -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    -d "client_assertion=$(head -n1 "$work/assertions.txt")" "$issuer/token")
  if [[ $first != *access_token* ]]; then
    echo "a ServiceAccount token was refused: $first" >&2
    tail -n 20 "$work/server.log" >&2
    exit 1
  fi
  echo "--- warm, generated secrets (HTTP Basic), server pinned to 1 core, wrk $CONNECTIONS connections on the other"
  secret=$(BASIC_FILE=$work/secrets.txt drive "$CONNECTIONS" | show | grep RESULT)
  echo "--- warm, ServiceAccount tokens as client_assertion (the cluster issuer's signature, then the ServiceAccount UID), same server and load"
  assertion=$(ASSERTION_FILE=$work/assertions.txt drive "$CONNECTIONS" | show | grep RESULT)
  python3 -c "import re,sys; g=lambda s,k: float(re.search(k+r'=([0-9.]+)', s)[1]); a,b=sys.argv[1],sys.argv[2]; print('    ServiceAccount/secret: %.0f%% of the tokens/s; p99 %.2f ms against %.2f ms' % (100*g(a,'rps')/g(b,'rps'), g(a,'p99_ms'), g(b,'p99_ms')))" "$assertion" "$secret"
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
  kubectl delete oauthclients -n bench --all --wait=true >/dev/null
}

# The server restarted (SIGTERM, then a new process on the same port) while every client
# keeps asking: how long until each is served again, and the latency meanwhile.
# Warm ES256 again with RESOURCES (default 1000) OAuthResources holding ten grants each in
# the index, every client asking for a claimed audience its resource grants (the decision's
# whole path on every token: normalising the audience, the holder, its grants), beside the
# run just before on the same server. The clients are put back as they were afterwards.
tenancy_bench() { # $1: the warm result without resources
  local n=${RESOURCES:-1000}
  echo "--- warm, ES256, $n OAuthResources and $((n * 10)) grants in the index; each client asks for a claimed audience granted to it"
  for i in $(seq 1 "$n"); do
    printf 'apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthResource\nmetadata:\n  name: api-%d\nspec:\n  audience: https://api-%d.bench.test\n  scopes: [{name: read}]\n  access:\n' "$i" "$i"
    for j in $(seq 1 9); do printf '  - {namespace: team-%d, scopes: [read]}\n' "$j"; done
    printf '  - {namespace: bench, scopes: [read]}\n---\n'
  done | kubectl apply -n bench --server-side -f - >/dev/null
  clients_with_audiences "$n" | kubectl apply -n bench --server-side -f - >/dev/null
  for _ in $(seq 1 240); do
    local asking
    asking=$(kubectl get oauthclientverifiers -n bench -o jsonpath='{range .items[*]}{.spec.audiences[0]}{"\n"}{end}' | grep -c 'bench.test' || true)
    [[ $asking -ge $CLIENTS ]] && break
    sleep 0.5
  done
  # The controller writes every client's and resource's status after that (and the API
  # server stores them): measured while it does, the figure would be the machine's
  # contention, not the decision's cost. Wait until it has been idle for 2 s.
  local before now
  for _ in $(seq 1 120); do
    before=$(awk '{print $14 + $15}' "/proc/$controller/stat")
    sleep 2
    now=$(awk '{print $14 + $15}' "/proc/$controller/stat")
    (( now - before < 10 )) && break
  done
  local first
  first=$(head -n1 "$work/basic.txt" | base64 -d)
  curl -fsS -u "$first" -d grant_type=client_credentials "$issuer/token" | python3 -c 'import sys,json,base64; t=json.load(sys.stdin)["access_token"].split(".")[1]; c=json.loads(base64.urlsafe_b64decode(t+"==")); print("    a token now: aud %s, scope %s" % (c["aud"], c.get("scope")))'
  local with
  with=$(drive "$CONNECTIONS" | show | grep RESULT)
  python3 -c "import re,sys; g=lambda s,k: float(re.search(k+r'=([0-9.]+)', s)[1]); a,b=sys.argv[1],sys.argv[2]; print('    with resources / without: %.1f%% of the tokens/s; p99 %.2f ms against %.2f ms' % (100*g(a,'rps')/g(b,'rps'), g(a,'p99_ms'), g(b,'p99_ms')))" "$with" "$1"
  echo "    server RSS with $n resources: $(rss_mib "$server") MiB"
  apply_clients "$CLIENTS" tok
  kubectl delete oauthresources -n bench --all --wait=true >/dev/null
}

clients_with_audiences() { # $1: how many audiences the clients spread over
  for i in $(seq 1 "$CLIENTS"); do
    printf 'apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: tok-%d\nspec:\n  scopes: [read]\n  audiences: ["https://api-%d.bench.test"]\n---\n' "$i" $(( (i - 1) % $1 + 1 ))
  done
}

restart_under_load() {
  echo "--- replica restart while $CLIENTS clients ask for tokens (16 client threads, ${RESTART_SECONDS:-20} s)"
  load loop "$issuer" "$work/basic.txt" --seconds "${RESTART_SECONDS:-20}" --threads 16 --out "$work/restart.tsv" &
  local loader=$!
  sleep 5
  local killed ready
  killed=$(date +%s.%N)
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
  start_server "$1"
  ready=$(date +%s.%N)
  wait "$loader"
  python3 hack/lib/token_load.py restart-report "$work/restart.tsv" "$killed" "$ready"
}

# Secrets a person chose (secretKeyRef) keep argon2id: the first token of each pays it,
# later ones are served from the verified cache.
chosen_bench() {
  local n=${CHOSEN:-20}
  echo "==> chosen secrets (secretKeyRef, argon2id): $n clients"
  for i in $(seq 1 "$n"); do
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: chosen-%d-value\nstringData:\n  secret: chosen-secret-%d-%s\n---\n' "$i" "$i" "$RANDOM"
    printf 'apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: chosen-%d\nspec:\n  clientId: chosen-%d\n  scopes: [read]\n  secrets:\n    - name: main\n      secretKeyRef: {name: chosen-%d-value, key: secret}\n---\n' "$i" "$i" "$i"
  done | kubectl apply -n bench --server-side -f - >/dev/null
  wait_ready "$n" chosen-
  kubectl get secrets -n bench -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.data.secret}{"\n"}{end}' |
    awk '$1 ~ /^chosen-[0-9]+-value$/' | while read -r name secret; do
      id=${name%-value}
      printf '%s:%s' "$id" "$(echo "$secret" | base64 -d)" | base64 -w0; echo
    done >"$work/chosen.txt"
  start_server "" 0
  echo "--- first token of each (one argon2id check each), 4 client threads, server on 1 core"
  load once "$issuer" "$work/chosen.txt" --threads 4 | grep RESULT
  echo "--- the same clients again (verified cache)"
  load once "$issuer" "$work/chosen.txt" --threads 4 --rounds 10 | grep RESULT
  echo "    server RSS: $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
}

# The controller's mutating API requests so far, by resource, from the API server's own
# counter (the objects the bench applies itself are OAuthClients without a subresource).
api_writes() {
  kubectl get --raw /metrics | python3 -c '
import re, sys
writes = {}
for line in sys.stdin:
    if not line.startswith("apiserver_request_total{"):
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", line))
    if labels.get("verb") not in ("POST", "PUT", "PATCH", "APPLY", "DELETE"):
        continue
    key = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
    writes[key] = writes.get(key, 0) + float(line.rsplit(" ", 1)[1])
print(" ".join("%s=%d" % kv for kv in sorted(writes.items())))'
}
writes_delta() { # $1, $2: two api_writes lines; prints the per-resource difference, bench applies left out
  python3 - "$1" "$2" "${3:-1}" <<'PY'
import sys
parse = lambda s: {k: float(v) for k, v in (kv.split("=") for kv in s.split())}
a, b, n = parse(sys.argv[1]), parse(sys.argv[2]), float(sys.argv[3])
d = {k: b.get(k, 0) - a.get(k, 0) for k in b}
d = {k: v for k, v in d.items() if v and k not in ("oauthclients", "namespaces")}
total = sum(v for k, v in d.items() if k != "leases")
print("    controller API writes: %d (%.2f per client): %s" % (total, total / n, ", ".join("%s %d" % kv for kv in sorted(d.items()))))
PY
}
# The API server's time per kind of write so far, "verb:resource=seconds/count ..." (its
# request-duration histogram: wall time, so under load it includes waiting for a core).
api_time() {
  kubectl get --raw /metrics | python3 -c '
import re, sys
t = {}
for line in sys.stdin:
    m = re.match(r"apiserver_request_duration_seconds_(sum|count)\{(.*)\} (\S+)", line)
    if not m:
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m[2]))
    if labels.get("verb") not in ("POST", "PUT", "PATCH", "APPLY", "DELETE"):
        continue
    key = labels["verb"] + ":" + labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
    s, c = t.get(key, (0.0, 0.0))
    t[key] = (s + float(m[3]), c) if m[1] == "sum" else (s, c + float(m[3]))
print(" ".join("%s=%f/%d" % (k, s, c) for k, (s, c) in sorted(t.items())))'
}
api_time_delta() { # $1, $2: two api_time lines
  python3 - "$1" "$2" <<'PY'
import sys
def parse(line):
    out = {}
    for kv in line.split():
        k, v = kv.split("=")
        s, c = v.split("/")
        out[k] = (float(s), float(c))
    return out
a, b = parse(sys.argv[1]), parse(sys.argv[2])
d = {k: (s - a.get(k, (0, 0))[0], c - a.get(k, (0, 0))[1]) for k, (s, c) in b.items()}
d = {k: v for k, v in d.items() if v[1] >= 100}
print("    API server time per write: " + ", ".join(
    "%s %.1f ms x %d" % (k, 1000 * s / c, c) for k, (s, c) in sorted(d.items(), key=lambda kv: -kv[1][0])))
PY
}
cpu_total() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
# CPU seconds (user + system) of each control-plane process and of the whole machine, as
# "name=seconds ..." (busy = all cores' non-idle time), to say where a run's CPU went.
cpu_split() {
  local out="" pid name
  for name in etcd kube-apiserver kube-controller-manager; do
    pid=$(pgrep -f -- "$name .*$work/cp/" | head -n1 || true)
    [[ -n $pid ]] && out+="$name=$(cpu_total "$pid") "
  done
  out+="controller=$(cpu_total "$controller") server=$(cpu_total "$server") "
  out+="busy=$(awk '/^cpu / {printf "%.2f", ($2+$3+$4+$7+$8)/100}' /proc/stat)"
  echo "$out"
}
cpu_split_delta() { # $1, $2: two cpu_split lines, $3: the run's wall seconds
  python3 - "$1" "$2" "$3" "$(nproc)" <<'PY'
import sys
parse = lambda s: {k: float(v) for k, v in (kv.split("=") for kv in s.split())}
a, b, wall, cores = parse(sys.argv[1]), parse(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
d = {k: b[k] - a.get(k, 0) for k in b}
busy = d.pop("busy")
rest = busy - sum(d.values())
parts = sorted(d.items(), key=lambda kv: -kv[1]) + [("the appliers and everything else", rest)]
print("    CPU over the run: %.0f s busy of %.0f s (%d cores x %.1f s wall): %s" % (busy, cores * wall, cores, wall, ", ".join("%s %.1f s" % kv for kv in parts)))
PY
}

pprof_top() { # $1: extra flags; the table of the API server's profile, or why there is none
  local out
  out=$(go tool pprof -top "$@" -nodecount="${PROFILE_TOP:-40}" "$work/apiserver.pprof" 2>&1 || true)
  if grep -q '^ *flat' <<<"$out"; then
    sed -n '1,/^ *flat/d; s/^/      /; p' <<<"$out"
  else
    echo "      (no profile: $(head -c 300 <<<"$out"))"
  fi
}

scale_bench() {
  local parallel=${APPLY_PARALLEL:-8}
  echo "==> scale bench: $SCALE clients applied at once by $parallel parallel server-side applies (as a GitOps tool does)"
  echo "    controller: --kube-api-qps ${KUBE_API_QPS:-500} --kube-api-burst ${KUBE_API_BURST:-1000} --max-concurrent-reconciles ${MAX_RECONCILES:-64}"
  kill -TERM "$controller"; wait "$controller" 2>/dev/null || true
  start_controller info "--kube-api-qps ${KUBE_API_QPS:-500} --kube-api-burst ${KUBE_API_BURST:-1000} --max-concurrent-reconciles ${MAX_RECONCILES:-64}"
  sleep 2
  for i in $(seq 1 "$SCALE"); do
    printf 'apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: scale-%d\nspec:\n  scopes: [read]\n---\n' "$i" >>"$work/scale-$((i % parallel)).yaml"
  done
  local w0 c0 start end
  w0=$(api_writes)
  c0=$(cpu_total "$controller")
  local split0 time0
  split0=$(cpu_split)
  time0=$(api_time)
  start=$(date +%s.%N)
  local appliers=()
  for f in "$work"/scale-*.yaml; do
    kubectl apply -n bench --server-side -f "$f" >/dev/null &
    appliers+=($!)
  done
  if [[ ${PROFILE:-0} == 1 ]]; then # the API server's own CPU profile (Go's pprof) of 30 s of it
    kubectl get --raw "/debug/pprof/profile?seconds=30" >"$work/apiserver.pprof" &
    local profiler=$!
    perf record -q -e cpu-clock -F 499 -p "$controller" -o "$work/controller.perf" -- sleep 30 >/dev/null 2>&1 &
    local controller_profiler=$!
  fi
  wait "${appliers[@]}"
  applied=$(date +%s.%N)
  wait_ready "$SCALE" scale-
  end=$(date +%s.%N)
  # Ready is written after the Secret and the verifier (act's order), so it implies both.
  printf -- "--- %d clients applied in %s s, all Ready with their Secrets %s s after the first apply\n" "$SCALE" \
    "$(python3 -c "print(round($applied - $start, 1))")" "$(python3 -c "print(round($end - $start, 1))")"
  echo "    controller CPU: $(python3 -c "print(round($(cpu_total "$controller") - $c0, 1))") s over the run; RSS $(rss_mib "$controller") MiB (peak $(hwm_mib "$controller") MiB)"
  cpu_split_delta "$split0" "$(cpu_split)" "$(python3 -c "print($end - $start)")"
  api_time_delta "$time0" "$(api_time)"
  writes_delta "$w0" "$(api_writes)" "$SCALE"
  if [[ ${PROFILE:-0} == 1 ]]; then
    wait "$profiler" || true
    echo "    where the API server's time went (pprof, 30 s of the run; cumulative, then self):"
    pprof_top -cum
    pprof_top
    wait "$controller_profiler" || true
    echo "    where the controller's time went (perf, 30 s of the run, self time):"
    perf report -i "$work/controller.perf" --stdio --no-children --sort symbol 2>/dev/null | grep -E '^ +[0-9]' | head -n "${PROFILE_TOP:-40}" | cut -c1-150 || true
  fi
  basic_file | head -n "$SCALE" >"$work/scale.txt"
  echo "--- the token server, right after: the first token of each of $(wc -l <"$work/scale.txt") clients"
  load once "$issuer" "$work/scale.txt" --threads 32 | grep RESULT
  curl -fsS "$issuer/metrics" | grep '^oauth_operator_indexed_clients' || true
  echo "    server RSS: $(rss_mib "$server") MiB (peak $(hwm_mib "$server") MiB)"

  echo "--- controller restart over $SCALE Ready clients"
  w0=$(api_writes)
  kill -TERM "$controller"; wait "$controller" 2>/dev/null || true
  : >"$work/controller.log"
  c0=$(date +%s.%N)
  start_controller "info,oauth_operator=debug" "--kube-api-qps ${KUBE_API_QPS:-500} --kube-api-burst ${KUBE_API_BURST:-1000}"
  # Wait until the new controller has reconciled every client once.
  while [[ $(grep -c 'reconciled' "$work/controller.log" || true) -lt $SCALE ]]; do sleep 0.5; done
  echo "    every client reconciled again $(python3 -c "print(round($(date +%s.%N) - $c0, 1))") s after the start"
  writes_delta "$w0" "$(api_writes)" "$SCALE"
  echo "    argon2 computations: $(grep -c 'argon2:' "$work/controller.log" || true)"
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
if [[ $what == assertion || $what == all ]]; then assertion_bench; fi
if [[ $what == refresh || $what == all ]]; then
  [[ -n ${server:-} ]] && kill -0 "$server" 2>/dev/null || start_server "" 0,1
  refresh_bench
fi
if [[ $what == scale || $what == all ]]; then
  [[ -n ${server:-} ]] && kill -0 "$server" 2>/dev/null || start_server ""
  scale_bench
fi
