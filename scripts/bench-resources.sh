#!/usr/bin/env bash
# Resource-layer benchmark: informer list + watch of 150k pods and EndpointSlice sync
# of 10k services x 10 pods, against capstan and Debian's etcd as the store, side by
# side. Bounded: every phase has a count and a deadline. Markdown on stdout.
#
#   scripts/bench-resources.sh                       # full run
#   scripts/bench-resources.sh --pods 10000 --services 1000   # quick look
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --bench
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/capstan/target}"
cargo build --release -p capstan -p capstan-bench >&2
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr)" >&2
exec "$CARGO_TARGET_DIR/release/capstan-resources-bench" \
  --capstan "$CARGO_TARGET_DIR/release/capstan" --etcd "$(command -v etcd)" "$@"
