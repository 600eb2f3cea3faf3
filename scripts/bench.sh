#!/usr/bin/env bash
# Side-by-side benchmark of capstan against Debian's etcd (etcd-server 3.4) on this
# machine: same client (the etcd-client crate), same disk, fsync on in both, loopback.
# Bounded: every phase stops after a request count or a time limit.
#
#   scripts/bench.sh                 # full run (1 and 3 members), Markdown on stdout
#   scripts/bench.sh --scale 0.1     # quick look; other flags go to capstan-bench
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --bench
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/capstan/target}"
cargo build --release -p capstan -p capstan-bench >&2
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr)" >&2
exec "$CARGO_TARGET_DIR/release/capstan-bench" \
  --capstan "$CARGO_TARGET_DIR/release/capstan" --etcd "$(command -v etcd)" "$@"
