#!/usr/bin/env bash
# Run capstan as an embedded single-member store: etcd v3 API on 127.0.0.1:2379,
# data in ./capstan-data, metrics and health on 127.0.0.1:2381. Extra arguments go to
# `capstan server` (etcd's flag names, e.g. --name, --data-dir, --listen-client-urls).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
echo "run: cargo run --release --bin capstan -- server $*"
exec cargo run --release --bin capstan -- server "$@"
