#!/usr/bin/env bash
# Makes sure the container runtime the image test needs is installed, from Debian's
# packages: runc (the OCI runtime a kubelet's containerd or CRI-O calls) and umoci
# (unpacks and builds OCI images without a daemon), installed with apt-get as root (runc
# needs root here anyway); and the RuntimeDefault seccomp profile of
# golang-github-containers-common (/usr/share/containers/seccomp.json, what CRI-O and
# podman apply), downloaded and unpacked into ~/.cache/oauth-operator/containers-common
# rather than installed, since installing pulls in iptables and CNI plugins nothing here
# uses. A machine that has them returns at once. Prints the versions.
#
#   hack/tools/runtime.sh
set -euo pipefail

packages=()
command -v runc >/dev/null || packages+=(runc)
command -v umoci >/dev/null || packages+=(umoci)
if ((${#packages[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "runtime.sh: ${packages[*]} missing, and installing them needs root: apt-get install ${packages[*]}" >&2
    exit 1
  fi
  echo "runtime.sh: installing ${packages[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${packages[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${packages[@]}" >&2; }
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/oauth-operator/containers-common
if [[ ! -f $cache/usr/share/containers/seccomp.json ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download golang-github-containers-common >&2) ||
    { apt-get update >&2 && (cd "$tmp" && apt-get download golang-github-containers-common >&2); }
  mkdir -p "$cache"
  dpkg-deb -x "$tmp"/golang-github-containers-common_*.deb "$cache"
fi
runc --version | head -1
umoci --version
echo "seccomp profile: $cache/usr/share/containers/seccomp.json"
