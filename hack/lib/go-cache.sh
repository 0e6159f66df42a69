# Sourced by the scripts that build Go binaries from the Go module proxy into a cache
# outside the tree (hack/controlplane/build.sh, hack/tools/helm.sh).

# go_cache_begin NAME LOCK: sets $out to the cache directory NAME. When its `.complete`
# marker exists, prints it and exits the calling script: a warm cache returns at once.
# Otherwise takes the lock LOCK (concurrent callers wait for one build; each tool has its
# own lock, so one build never waits behind another), checks again, and sets up the Go
# build. The marker is written last (go_cache_done), so an interrupted build is redone.
go_cache_begin() {
  local cache_root=${OAUTH_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-operator}
  out="$cache_root/$1"
  if [[ -f "$out/.complete" ]]; then
    echo "$out"
    exit 0
  fi
  mkdir -p "$cache_root"
  exec 9>"$cache_root/$2"
  flock 9
  if [[ -f "$out/.complete" ]]; then
    echo "$out"
    exit 0
  fi
  mkdir -p "$out"
  go_cache_start=$(date +%s)
  export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
  export CGO_ENABLED=0
}

# go_cache_done WHAT: reports the build time, marks the cache complete, prints $out.
go_cache_done() {
  echo "$1 built in $(( $(date +%s) - go_cache_start ))s" >&2
  touch "$out/.complete"
  echo "$out"
}
