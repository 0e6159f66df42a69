#!/usr/bin/env bash
# A long fuzzing run of the token server's request parsing and the CRD-to-index
# conversion (tests/fuzz.rs, proptest): CASES cases per property (default 150000, about 5 minutes here), release
# build. Finds are shrunk to a minimal request and printed; nothing is written to disk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROPTEST_CASES=${CASES:-150000} cargo test --release --locked --test fuzz -- --nocapture
