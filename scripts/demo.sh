#!/bin/sh
# scripts/demo.sh BUILD_DIR: trace the bundled demo program (examples/demo.c) and print its
# report, then run the Node heap-versus-Buffer experiment (examples/heap_growth.c and
# buffer_growth.c) under a 64M heap cap: the heap version dies with the Node-style fatal error,
# the buffer version runs past the cap. `make demo` runs it after building; it builds nothing
# itself. Shows the commands it runs, so the output doubles as a how-to. The traces stay in
# BUILD_DIR/demo/ for further reading.
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
wrapper=$build/memtrace
heap_growth=$build/examples/heap_growth
buffer_growth=$build/examples/buffer_growth
for f in "$shim" "$report" "$demo" "$wrapper" "$heap_growth" "$buffer_growth"; do
    [ -f "$f" ] || die "$f: not found (run make first)"
done

dir=$build/demo
trace=$dir/demo.mtrace
mkdir -p "$dir"
# The shim never overwrites a trace (it adds .1, .2, ...): clear the last run's.
rm -f "$dir"/*.mtrace "$dir"/*.mtrace.*

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

# The experiment: same cap, two ways to grow. The heap version's death (SIGABRT, exit status 134
# through the wrapper) is the expected outcome, so only another status is a failure here.
limit=64M
echo
echo "Heap versus external under a $limit heap cap (see README, \"Heap versus external\"):"
echo
heap_trace=$dir/heap_growth.mtrace
echo "\$ $(show "$wrapper") --heap-limit $limit -o $(show "$heap_trace") -- $(show "$heap_growth")"
status=0
"$wrapper" --heap-limit "$limit" -o "$heap_trace" -- "$heap_growth" || status=$?
[ "$status" -eq 134 ] || die "heap_growth: exit status $status, expected 134 (the heap cap's abort)"
echo "(exit status $status: the heap cap stopped it, as V8's heap limit stops the Node version)"

echo
buffer_trace=$dir/buffer_growth.mtrace
echo "\$ $(show "$wrapper") --heap-limit $limit -o $(show "$buffer_trace") -- $(show "$buffer_growth") 10"
"$wrapper" --heap-limit "$limit" -o "$buffer_trace" -- "$buffer_growth" 10 ||
    die "buffer_growth: exit status $?, expected 0 (external memory passes the heap cap)"
echo "(exit status 0: 100 MiB of buffers, external memory, passed the $limit heap cap)"

echo
echo "More:"
echo "  $(show "$report") --events $(show "$trace")"
echo "  $(show "$report") --json $(show "$trace")"
echo "  $(show "$report") --timeline $(show "$heap_trace")"
echo "  $(show "$build/memtrace") -- COMMAND [ARGS...]    (trace your own program)"
