#!/usr/bin/env bash
# make bench: allocation churn native, under memtrace and (where installed) under heaptrack,
# side by side in one run. Prints the median of RUNS paired runs, the slowdown ratios and the
# trace bytes per recorded event. Usage: scripts/bench.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: bench.sh BUILD_DIR}
runs=${RUNS:-5}
iters=${ITERS:-1000000}
bench="$build/bench/bench_hooks"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { sed -n 's/^seconds \([0-9.]*\).*/\1/p'; }

printf '%-22s %10s %10s %8s %10s %8s %10s\n' workload native_s memtrace_s ratio heaptrack_s ratio bytes/ev
for spec in "churn 1" "churn 2" "churn 8" "deep 1" "realloc 1" "mmap 1"; do
    set -- $spec
    mode=$1 threads=$2
    n=$iters
    [ "$mode" = mmap ] && n=$((iters / 10))
    per_thread=$((n / threads))
    : > "$tmp/native" ; : > "$tmp/mt" ; : > "$tmp/ht"
    for _ in $(seq "$runs"); do
        "$bench" "$threads" "$per_thread" "$mode" | secs >> "$tmp/native"
        rm -f "$tmp"/t.*
        LD_PRELOAD="$build/libmemtrace.so" MEMTRACE_OUTPUT="$tmp/t.%p" \
            "$bench" "$threads" "$per_thread" "$mode" | secs >> "$tmp/mt"
        if command -v heaptrack >/dev/null 2>&1; then
            heaptrack -o "$tmp/ht.%p" "$bench" "$threads" "$per_thread" "$mode" 2>/dev/null |
                secs >> "$tmp/ht" || true
            rm -f "$tmp"/ht.*
        fi
    done
    nat=$(median < "$tmp/native")
    mt=$(median < "$tmp/mt")
    trace=$(ls "$tmp"/t.* | head -n 1)
    bytes=$(stat -c %s "$trace")
    events=$("$build/memtrace-report" --json "$trace" |
        awk '/"events": \{/{on=1; next} on && /\}/{on=0} on {gsub(/[",:]/," "); s+=$2} END {print s}')
    ht=-; htr=-
    if [ -s "$tmp/ht" ]; then
        ht=$(median < "$tmp/ht")
        htr=$(awk -v a="$ht" -v b="$nat" 'BEGIN {printf "%.2f", a / b}')
    fi
    printf '%-22s %10s %10s %8s %10s %8s %10s\n' "$mode x$threads ($((n * 2)) calls)" "$nat" "$mt" \
        "$(awk -v a="$mt" -v b="$nat" 'BEGIN {printf "%.2f", a / b}')" "$ht" "$htr" \
        "$(awk -v a="$bytes" -v b="$events" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')"
done
echo "machine: $(nproc) cores, $(uname -r), $(ldd --version | head -n 1)"
