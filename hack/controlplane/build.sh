#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kubectl) from the Go module proxy into a cache outside the tree, once.
# Prints the directory holding the binaries. A warm cache returns at once: the
# `.complete` marker is written last, so an interrupted build is redone.
set -euo pipefail

K8S_VERSION=1.36.3   # keep in step with kubernetes/go.mod
ETCD_VERSION=3.6.16  # keep in step with etcd/go.mod

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/go-cache.sh
source "$here/../lib/go-cache.sh"
go_cache_begin "k8s-$K8S_VERSION-etcd-$ETCD_VERSION" .build.lock

echo "building etcd v$ETCD_VERSION into $out" >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" .)

echo "building kubernetes v$K8S_VERSION (kube-apiserver, kube-controller-manager, kubectl) into $out" >&2
ver=k8s.io/component-base/version
cgver=k8s.io/client-go/pkg/version
ldflags="-s -w"
for pkg in "$ver" "$cgver"; do
  ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*}"
  ldflags+=" -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean"
  ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
(cd "$here/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl)

go_cache_done "control plane"
