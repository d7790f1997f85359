#!/bin/sh
# Install what building and testing memtrace needs on Debian 12 (bookworm).
#
#   scripts/install-deps.sh          build + test dependencies (what `make demo` and `make test` need)
#   scripts/install-deps.sh --dev    also clang, clang-format, shellcheck (`make fuzz`,
#                                    `make check-format`, scripts/ci.sh)
#
# Idempotent and quiet: when every package is already installed it prints nothing and exits 0.
# Otherwise it runs `apt-get update` and installs only the missing packages (as root, or through
# sudo when available). Never needed: heaptrack or any other tracer.
set -eu

prog=install-deps.sh

# Package: why we need it.
#   build-essential  gcc, make, libc headers: builds everything
#   g++              C++ test programs (tests/progs/*.cc: operator new/delete)
#   pkg-config       the Makefile finds libunwind, libdw and Criterion with it
#   libunwind-dev    stack capture inside the shim (preload/unwind.c)
#   libdw-dev        offline symbolization in memtrace-report (function, file:line, inlines)
#   libelf-dev       ELF access used with libdw (build ids, program headers)
#   libzstd-dev      compression of event chunks (MEMTRACE_COMPRESS=1) and reading them back
#   libcriterion-dev the unit and integration test framework
#   python3 sqlite3 git nodejs bash
#                    real programs the integration tests run under the shim (gcc too)
required="build-essential g++ pkg-config libunwind-dev libdw-dev libelf-dev libzstd-dev"
required="$required libcriterion-dev python3 sqlite3 git nodejs bash"
# Optional tools for developers: clang (libFuzzer target `make fuzz`), clang-format
# (`make check-format`), shellcheck (scripts/ci.sh lints the shell scripts).
dev="clang clang-format shellcheck"

usage() {
    echo "usage: scripts/install-deps.sh [--dev]"
}

wanted=$required
case "${1-}" in
'') ;;
--dev) wanted="$required $dev" ;;
-h | --help)
    usage
    exit 0
    ;;
*)
    usage >&2
    exit 1
    ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "$prog: error: dpkg-query/apt-get not found: this script supports Debian 12;" \
        "install by hand these packages or your system's equivalents: $wanted" >&2
    exit 1
fi

# "ii" = wanted install, installed. A removed package keeps a "rc" entry: that counts as missing.
missing=
for pkg in $wanted; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    case "$status" in
    ii*) ;;
    *) missing="$missing $pkg" ;;
    esac
done
missing=${missing# }

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=
elif command -v sudo >/dev/null 2>&1; then
    as_root=sudo
else
    echo "$prog: error: missing packages and not root (no sudo): run as root:" \
        "apt-get install $missing" >&2
    exit 1
fi

echo "$prog: installing: $missing"
# `env` so the variable reaches apt-get through sudo, whose env_reset would drop it.
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086 # one word per package
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
