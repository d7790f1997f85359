#!/bin/sh
# scripts/demo.sh BUILD_DIR: trace the bundled demo program (examples/demo.c) and print its
# report. `make demo` runs it after building; it builds nothing itself. Shows the commands it runs,
# so the output doubles as a how-to. The trace stays in BUILD_DIR/demo/ for further reading.
set -eu

die() {
    echo "demo.sh: error: $*" >&2
    exit 1
}

if [ $# -ne 1 ]; then
    echo "usage: scripts/demo.sh BUILD_DIR (normally run by make demo)" >&2
    exit 1
fi
build=${1%/}
shim=$build/libmemtrace.so
report=$build/memtrace-report
demo=$build/examples/demo
for f in "$shim" "$report" "$demo"; do
    [ -f "$f" ] || die "$f: not found (run make first)"
done

dir=$build/demo
trace=$dir/demo.mtrace
mkdir -p "$dir"
# The shim never overwrites a trace (it adds .1, .2, ...): clear the last run's.
rm -f "$trace" "$trace".*

# Paths as the reader would type them from here.
show() {
    printf '%s\n' "${1#"$PWD"/}"
}

echo "\$ LD_PRELOAD=$(show "$shim") MEMTRACE_OUTPUT=$(show "$trace") $(show "$demo")"
LD_PRELOAD=$shim${LD_PRELOAD:+:$LD_PRELOAD} MEMTRACE_OUTPUT=$trace "$demo"
[ -f "$trace" ] || die "$trace: the traced run wrote no trace"

echo
echo "\$ $(show "$report") $(show "$trace")"
"$report" "$trace"

echo
echo "More:"
echo "  $(show "$report") --events $(show "$trace")"
echo "  $(show "$report") --json $(show "$trace")"
echo "  $(show "$build/memtrace") -- COMMAND [ARGS...]    (trace your own program)"
