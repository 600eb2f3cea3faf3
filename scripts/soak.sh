#!/usr/bin/env bash
# Randomized fault soak of the store: N seeded runs of a 3- or 5-member capstan cluster
# under faults (kill -9, leader kill, SIGSTOP, isolation, one-way cuts, delay, connection
# loss, remove + wipe + rejoin) with concurrent clients and watchers; every run's history
# is checked for linearizability, lost acknowledged writes and watch gaps. Bounded: each
# run lasts its fault duration plus at most about a minute to heal and converge.
#
#   scripts/soak.sh --runs 100 --first-seed 1000       # JSON report in soak.json,
#                                                      # Markdown summary on stdout
# Other flags: --duration SECS (faults per run, default 12), --members 3|5|mix, --out FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/capstan/target}"
cargo build --release -p capstan -p capstan-check --bins >&2
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr)" >&2
exec "$CARGO_TARGET_DIR/release/capstan-soak" --capstan "$CARGO_TARGET_DIR/release/capstan" "$@"
