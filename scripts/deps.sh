#!/usr/bin/env bash
# Install what building and testing capstan needs, and nothing that is already there.
#
#   scripts/deps.sh           build deps: a C++ compiler (rocksdb), clang + libclang-dev
#                             (bindgen for rocksdb), protoc (tonic-prost-build)
#   scripts/deps.sh --test    + etcdctl (Debian etcd-client), dig (bind9-dnsutils) and the
#                             Python test venv .venv-test/
#   scripts/deps.sh --bench   + the peers the benchmarks compare with: etcd (etcd-server),
#                             knot and unbound, and dnsperf
#
# Idempotent: a second run installs nothing and calls no package registry. apt-get runs
# only when a package is missing (with one `apt-get update` first), and pip only when
# tests/python/requirements.txt changed since the venv was last filled.
set -euo pipefail

cd "$(dirname "$0")/.."

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "deps.sh: unknown argument '$arg' (use --test and/or --bench)" >&2; exit 2 ;;
  esac
done

say() { printf 'deps: %s\n' "$*"; }

# Debian packages: each entry is "package:command-or-file that proves it is installed".
checks=(
  "g++:c++"
  "clang:clang"
  "libclang-dev:libclang"
  "protobuf-compiler:protoc"
)
if [ "$want_test" = 1 ]; then
  checks+=("etcd-client:etcdctl" "openssl:openssl" "bind9-dnsutils:dig")
fi
if [ "$want_bench" = 1 ]; then
  checks+=("etcd-server:etcd" "dnsperf:dnsperf" "knot:knotd" "unbound:unbound" "bind9-dnsutils:dig")
fi

have_libclang() {
  # bindgen loads libclang.so at build time; libclang-dev provides the unversioned link.
  compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null ||
    compgen -G '/usr/lib/*/libclang.so' >/dev/null ||
    [ -n "${LIBCLANG_PATH:-}" ]
}

missing=()
for entry in "${checks[@]}"; do
  pkg=${entry%%:*}
  probe=${entry#*:}
  if [ "$probe" = libclang ]; then
    have_libclang || missing+=("$pkg")
  elif ! command -v "$probe" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done

# The test venv needs a working `python3 -m venv` (Debian splits it into python3-venv).
venv_ok() {
  local probe
  probe=$(mktemp -d)
  if python3 -m venv "$probe/v" >/dev/null 2>&1 && [ -x "$probe/v/bin/pip" ]; then
    rm -rf "$probe"
    return 0
  fi
  rm -rf "$probe"
  return 1
}
if [ "$want_test" = 1 ]; then
  if ! command -v python3 >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
  elif [ ! -x .venv-test/bin/python ] && ! venv_ok; then
    missing+=(python3-venv)
  fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      apt=(sudo apt-get)
    else
      echo "deps.sh: missing Debian packages ${missing[*]}, and not root: install them, then rerun" >&2
      exit 1
    fi
  else
    apt=(apt-get)
  fi
  say "installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${apt[@]}" update -qq
  "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

if [ "$want_test" = 1 ]; then
  req=tests/python/requirements.txt
  stamp=.venv-test/.requirements.sha256
  want_hash=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x .venv-test/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_hash" ] &&
    .venv-test/bin/python -c 'import etcd3' >/dev/null 2>&1; then
    say "python venv .venv-test up to date"
  else
    if [ ! -x .venv-test/bin/python ] || ! .venv-test/bin/python -c 'import sys' >/dev/null 2>&1; then
      say "creating python venv .venv-test"
      rm -rf .venv-test
      python3 -m venv .venv-test
    fi
    say "pip install -r $req into .venv-test"
    .venv-test/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
    .venv-test/bin/python -c 'import etcd3' # fails loudly if the pins stopped working
    echo "$want_hash" >"$stamp"
  fi
fi
