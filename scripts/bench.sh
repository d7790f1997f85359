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

# ---- report: analysis speed and memory on a long trace ---------------------------------------
# One churn recording of REPORT_CALLS calls (default 50 million: 2 threads of malloc/free pairs),
# read by memtrace-report (summary) and, when heaptrack is installed, the same workload recorded
# by heaptrack and read by heaptrack_print. Wall seconds, events per second, peak RSS.
report_calls=${REPORT_CALLS:-50000000}
report_pairs=$((report_calls / 4)) # per thread: 2 threads, 2 calls a pair
echo
echo "report: analysis of one churn trace ($report_calls calls)"
rm -f "$tmp"/rt.*
LD_PRELOAD="$build/libmemtrace.so" MEMTRACE_OUTPUT="$tmp/rt.%p" \
    "$bench" 2 "$report_pairs" churn > /dev/null
rtrace=$(ls "$tmp"/rt.* | head -n 1)
revents=$("$build/memtrace-report" --json "$rtrace" |
    awk '/"(events|other_events)": \{/{on=1; next} on && /\}/{on=0} on && !/dropped/ {gsub(/[",:]/," "); s+=$2} END {print s}')
timed() { /usr/bin/time -f '%e %M' -o "$tmp/time" "$@" > /dev/null 2>&1 || true; cat "$tmp/time"; }
read -r rsec rkb < <(timed "$build/memtrace-report" "$rtrace")
printf '%-28s %12s %10s %14s %12s\n' tool events seconds events/s peak_rss_MB
printf '%-28s %12s %10s %14s %12s\n' "memtrace-report" "$revents" "$rsec" \
    "$(awk -v e="$revents" -v s="$rsec" 'BEGIN {if (s > 0) printf "%.0f", e / s; else print "-"}')" \
    "$(awk -v k="$rkb" 'BEGIN {printf "%.1f", k / 1024}')"
printf '%-28s %12s\n' "  (trace bytes)" "$(stat -c %s "$rtrace")"
rm -f "$rtrace"
if command -v heaptrack >/dev/null 2>&1 && command -v heaptrack_print >/dev/null 2>&1; then
    heaptrack -o "$tmp/hrt" "$bench" 2 "$report_pairs" churn > /dev/null 2>&1 || true
    hfile=$(ls "$tmp"/hrt* 2>/dev/null | head -n 1)
    if [ -n "$hfile" ]; then
        read -r hsec hkb < <(timed heaptrack_print "$hfile")
        printf '%-28s %12s %10s %14s %12s\n' "heaptrack_print" "$report_calls" "$hsec" \
            "$(awk -v e="$report_calls" -v s="$hsec" 'BEGIN {if (s > 0) printf "%.0f", e / s; else print "-"}')" \
            "$(awk -v k="$hkb" 'BEGIN {printf "%.1f", k / 1024}')"
        printf '%-28s %12s\n' "  (heaptrack file bytes)" "$(stat -c %s "$hfile")"
        rm -f "$hfile"
    fi
else
    echo "heaptrack_print: not installed, no comparison"
fi
