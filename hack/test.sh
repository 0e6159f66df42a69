#!/usr/bin/env bash
# Every check the project has, from a clean checkout: formatting, lints, unit tests,
# integration tests on a real control plane (the `envtest` crate; its Go binaries are built
# from the Go module proxy on first use and cached in ~/.cache/oauth-operator, like helm for
# the chart tests), headless Chromium for the sign-in tests and runc for the image test
# (Debian's packages), the OCI image (hack/image.sh), and the README's run command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
step() { echo "==> [$(( $(date +%s) - start ))s] $*"; }

step "control plane binaries (cached after the first build)"
hack/controlplane/build.sh

step "helm (built from the Go module proxy, cached after the first build)"
hack/tools/helm.sh

step "headless Chromium for the sign-in tests (Debian's chromium and chromium-driver)"
hack/tools/chromium.sh

step "container runtime for the image test (Debian's runc, umoci, containers-common)"
hack/tools/runtime.sh

step "rust-version: not below any dependency's own minimum"
cargo metadata --locked --format-version 1 --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" \
  | python3 hack/lib/rust-version.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --workspace --all-targets --features e2e -- -D warnings

# One feature set for every step, so one build serves them all: first what a plain
# `cargo test` runs (unit, router and fuzz tests; no cluster, no Go), then the integration
# tests on a real control plane.
step "fast tests: unit, router, fuzz"
cargo test --locked --workspace --features e2e --lib --bins --test router --test sign_in --test fuzz

# The release build the image holds; the image test runs hack/image.sh again (warm: seconds).
step "the OCI image (hack/image.sh)"
hack/image.sh

step "integration tests on a real control plane"
cargo test --locked --features e2e --test e2e

step "end-to-end run command (hack/run.sh --once)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') \
  hack/run.sh --once

step "all checks passed"
