#!/usr/bin/env bash
# Runs oauth-operator end to end on this machine:
#   1. builds the operator and (once, cached) the local control plane,
#   2. starts a control plane on 127.0.0.1 with the CRDs (the `envtest` binary), unless a
#      cluster is given with --kubeconfig or $KUBECONFIG (then it applies crds/ there),
#   3. runs the operator's own binary twice, as in a cluster: `oauth-operator controller`
#      and `oauth-operator server`,
#   4. applies examples/, waits for the client to be Ready,
#   5. obtains a token with curl using the generated Secret, and prints its claims.
# Then keeps running until Ctrl-C (or exits at once with --once).
#
# Usage: hack/run.sh [--once] [--kubeconfig PATH]     env: PORT (default 8080)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

once=false
kubeconfig=${KUBECONFIG:-}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --once) once=true ;;
    --kubeconfig) kubeconfig=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

port=${PORT:-8080}
issuer="http://127.0.0.1:$port"
operator_namespace=oauth-operator-system
bin_dir=$(hack/controlplane/build.sh)
kubectl_bin="$bin_dir/kubectl"
# The same packages, features and targets as hack/test.sh's `cargo test`, so its build is reused.
cargo build --quiet --workspace --all-targets --features e2e
logs=target/local-run
mkdir -p "$logs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
  # Newest first: the operator before the control plane it talks to.
  for (( i=${#pids[@]}-1; i>=0; i-- )); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
alive() { # pid name log
  kill -0 "$1" 2>/dev/null || { echo "$2 exited; see $3" >&2; tail -30 "$3" >&2; exit 1; }
}
kubectl() { "$kubectl_bin" --kubeconfig "$kubeconfig" "$@"; }

if [[ -z "$kubeconfig" ]]; then
  kubeconfig=target/local-cluster/kubeconfig
  echo "==> starting a local control plane (log: $logs/control-plane.log)"
  target/debug/envtest --dir target/local-cluster --crds crds/crds.yaml >"$logs/control-plane.log" 2>&1 &
  pids+=($!)
  # It prints this line once the API server is ready and the CRDs are established.
  for _ in $(seq 1 720); do
    grep -q '^control plane ready' "$logs/control-plane.log" && break
    alive "${pids[0]}" "the control plane" "$logs/control-plane.log"
    sleep 0.5
  done
  grep -q '^control plane ready' "$logs/control-plane.log" || { echo "control plane not ready" >&2; exit 1; }
else
  echo "==> kubectl apply -f crds/ (cluster of $kubeconfig)"
  kubectl apply --server-side --force-conflicts -f crds/crds.yaml
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
fi
kubectl create namespace "$operator_namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

common=(--kubeconfig "$kubeconfig")
echo "==> starting oauth-operator controller (log: $logs/controller.log)"
target/debug/oauth-operator "${common[@]}" controller --issuer "$issuer" \
  --health-listen "127.0.0.1:$(free_port)" >"$logs/controller.log" 2>&1 &
pids+=($!)
controller_pid=$!
echo "==> starting oauth-operator server on 127.0.0.1:$port (log: $logs/server.log)"
target/debug/oauth-operator "${common[@]}" server --issuer "$issuer" \
  --listen "127.0.0.1:$port" >"$logs/server.log" 2>&1 &
pids+=($!)
server_pid=$!

for _ in $(seq 1 240); do
  if curl -fsS "$issuer/readyz" >/dev/null 2>&1; then break; fi
  alive "$controller_pid" "the controller" "$logs/controller.log"
  alive "$server_pid" "the token server" "$logs/server.log"
  sleep 0.5
done
curl -fsS "$issuer/readyz" >/dev/null || { echo "token server not ready; see $logs/server.log" >&2; exit 1; }

echo "==> kubectl apply -f examples/"
kubectl apply -n default -f examples/
kubectl wait -n default --for=condition=Ready oauthclient/billing-service --timeout=120s
kubectl get -n default oauthclients

secret=billing-service-credentials
client_id=$(kubectl get -n default secret "$secret" -o jsonpath='{.data.client_id}' | base64 -d)
client_secret=$(kubectl get -n default secret "$secret" -o jsonpath='{.data.client_secret}' | base64 -d)
token_endpoint=$(kubectl get -n default secret "$secret" -o jsonpath='{.data.token_endpoint}' | base64 -d)

echo "==> curl -u \"\$CLIENT_ID:\$CLIENT_SECRET\" -d grant_type=client_credentials $token_endpoint"
response=$(curl -fsS -u "$client_id:$client_secret" -d grant_type=client_credentials "$token_endpoint")
echo "$response"
access_token=$(printf '%s' "$response" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
payload=$(printf '%s' "$access_token" | cut -d. -f2 | tr '_-' '/+')
while (( ${#payload} % 4 )); do payload+="="; done
echo "==> token claims"
printf '%s' "$payload" | base64 -d
echo
echo "==> verify it against $issuer/jwks"
curl -fsS "$issuer/jwks"
echo

echo "==> dynamic client registration (RFC 7591) with initial access token partner-onboarding"
kubectl wait -n default --for=jsonpath='{.status.secretName}'=partner-onboarding-token \
  initialaccesstoken/partner-onboarding --timeout=60s
kubectl get -n default initialaccesstokens
remaining=$(kubectl get -n default initialaccesstoken partner-onboarding -o jsonpath='{.status.remaining}')
if [[ "$remaining" == 0 ]]; then
  echo "(partner-onboarding has registered all its clients in an earlier run; skipping)"
else
  iat=$(kubectl get -n default secret partner-onboarding-token -o jsonpath='{.data.token}' | base64 -d)
  echo "==> curl -H \"Authorization: Bearer \$IAT\" -H 'Content-Type: application/json' -d '{...}' $issuer/register"
  # Ready is written right after the verifier the server watches; give the server's watch
  # a moment to deliver it (a token it has not seen yet is answered 401).
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    registration=$(curl -fsS -H "Authorization: Bearer $iat" -H 'Content-Type: application/json' \
      -d '{"client_name":"Partner A","grant_types":["client_credentials"],"scope":"invoices.read"}' \
      "$issuer/register") && break
    [[ $attempt == 10 ]] && { echo "registration failed" >&2; exit 1; }
    sleep 0.5
  done
  # Show the response without the two values it holds only once.
  printf '%s\n' "$registration" | sed -E 's/"(client_secret|registration_access_token)":"[^"]+"/"\1":"(hidden)"/g'
  reg_id=$(printf '%s' "$registration" | sed -E 's/.*"client_id":"([^"]+)".*/\1/')
  reg_secret=$(printf '%s' "$registration" | sed -E 's/.*"client_secret":"([^"]+)".*/\1/')
  echo "==> the registered client $reg_id gets a token at once"
  curl -fsS -u "$reg_id:$reg_secret" -d grant_type=client_credentials "$token_endpoint" | cut -c1-80
  echo "..."
  kubectl get -n default oauthclients -l oauth-operator.dev/initial-access-token=partner-onboarding
fi

if [[ "$once" == true ]]; then
  echo "==> done (--once)"
  exit 0
fi
echo "==> running; kubeconfig: $kubeconfig; Ctrl-C to stop"
wait -n "${pids[@]}"
