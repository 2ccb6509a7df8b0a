#!/usr/bin/env bash
# The test command: fetches the test models if missing (idempotent), checks formatting, runs
# every test of the workspace once (one build; dependencies are optimised even in test builds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --models-only
cargo fmt --all --check
cargo test --workspace --locked
