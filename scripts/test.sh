#!/usr/bin/env bash
# The full test suite: formatting, lints, then every test of the workspace.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test etcdctl_single`).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "scripts/deps.sh --test"
scripts/deps.sh --test

# Build outside the clone so that CI (a fresh clone each run) reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/capstan/target}"
# The Python client tests run with the venv that deps.sh filled.
export CAPSTAN_TEST_PYTHON="$PWD/.venv-test/bin/python"
export PATH="$PWD/.venv-test/bin:$PATH"
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
echo "CAPSTAN_TEST_PYTHON=$CAPSTAN_TEST_PYTHON"
echo "etcdctl: $(command -v etcdctl || echo 'not found')"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace $*"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary, the last
# of which is usually an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
