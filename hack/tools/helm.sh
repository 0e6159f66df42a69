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
# shellcheck source=../lib/go-cache.sh
source "$here/../lib/go-cache.sh"
go_cache_begin "helm-$HELM_VERSION" .helm-build.lock

# What upstream's Makefile stamps for a tagged release (the module zip carries no git
# commit, so that one stays empty). Without it `helm version` says only "v4.3".
pkg=helm.sh/helm/v4/internal/version
ldflags="-s -w -X $pkg.version=v$HELM_VERSION -X $pkg.metadata= -X $pkg.gitTreeState=clean"

echo "building helm v$HELM_VERSION into $out" >&2
(cd "$here/helm" && go build -trimpath -ldflags "$ldflags" -o "$out/helm" helm.sh/helm/v4/cmd/helm) >&2
"$out/helm" version --short >&2

go_cache_done helm
