#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy into a cache outside the tree, once.
# Prints the directory holding `helm` on stdout (everything else goes to stderr). A warm
# cache returns at once: the `.complete` marker is written last, so an interrupted build
# is redone. Needs only Go: the pinned wrapper module in helm/ (go.mod + go.sum) fixes
# every dependency, so the build is reproducible.
#
#   PATH="$(hack/tools/helm.sh):$PATH" helm lint charts/oauth-operator --set issuer=https://auth.example.com
set -euo pipefail

HELM_VERSION=4.3.1   # keep in step with helm/go.mod

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${OAUTH_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-operator}
out="$cache_root/helm-$HELM_VERSION"

if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

# Serialise concurrent callers (several tests may ask at once). A lock of its own, so a
# helm build never waits behind a control-plane build or the reverse.
mkdir -p "$cache_root"
exec 9>"$cache_root/.helm-build.lock"
flock 9
if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
start=$(date +%s)
export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
export CGO_ENABLED=0

# What upstream's Makefile stamps for a tagged release (the module zip carries no git
# commit, so that one stays empty). Without it `helm version` says only "v4.3".
pkg=helm.sh/helm/v4/internal/version
ldflags="-s -w -X $pkg.version=v$HELM_VERSION -X $pkg.metadata= -X $pkg.gitTreeState=clean"

echo "building helm v$HELM_VERSION into $out" >&2
(cd "$here/helm" && go build -trimpath -ldflags "$ldflags" -o "$out/helm" helm.sh/helm/v4/cmd/helm) >&2
"$out/helm" version --short >&2

echo "helm built in $(( $(date +%s) - start ))s" >&2
touch "$out/.complete"
echo "$out"
