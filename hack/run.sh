#!/usr/bin/env bash
# Runs oauth-operator end to end on this machine:
#   1. builds the operator and (once, cached) the local control plane,
#   2. starts `oauth-operator local`: a control plane on 127.0.0.1 (or the cluster of
#      --kubeconfig/$KUBECONFIG when given), the CRDs, the controller and the token server,
#   3. applies examples/, waits for the client to be Ready,
#   4. obtains a token with curl using the generated Secret, and prints its claims.
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
bin_dir=$(hack/controlplane/build.sh)
kubectl_bin="$bin_dir/kubectl"
# --all-targets: the same feature set as `cargo test`, so the test build is reused.
cargo build --quiet --all-targets
mkdir -p target
log=target/local-run.log

args=(local --listen "127.0.0.1:$port" --issuer "$issuer")
if [[ -n "$kubeconfig" ]]; then
  args=(--kubeconfig "$kubeconfig" "${args[@]}")
else
  kubeconfig=target/local-cluster/kubeconfig
fi

echo "==> starting oauth-operator local (log: $log)"
target/debug/oauth-operator "${args[@]}" >"$log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 240); do
  if curl -fsS "$issuer/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "oauth-operator exited; see $log" >&2; tail -30 "$log" >&2; exit 1; fi
  sleep 0.5
done
curl -fsS "$issuer/readyz" >/dev/null || { echo "token server not ready; see $log" >&2; exit 1; }

kubectl() { "$kubectl_bin" --kubeconfig "$kubeconfig" "$@"; }

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
wait "$pid"
