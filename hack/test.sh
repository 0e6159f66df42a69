#!/usr/bin/env bash
# Every check the project has, from a clean checkout: formatting, lints, unit tests,
# integration tests on a real control plane (built from the Go module proxy on first use
# and cached in ~/.cache/oauth-operator, like helm for the chart tests), and the README's
# run command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
step() { echo "==> [$(( $(date +%s) - start ))s] $*"; }

step "control plane binaries (cached after the first build)"
hack/controlplane/build.sh

step "helm (built from the Go module proxy, cached after the first build)"
hack/tools/helm.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (unit, then integration on a real control plane)"
cargo test --locked --all-targets

step "end-to-end run command (hack/run.sh --once)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') \
  hack/run.sh --once

step "all checks passed"
