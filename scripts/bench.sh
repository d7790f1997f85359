#!/usr/bin/env bash
# make bench: every workload native, under memtrace and (where installed) under heaptrack, side by
# side in one run. For each: the median of RUNS paired runs, the slowdown ratios, and trace bytes
# per recorded program call (memtrace's file, and heaptrack's zstd file on the same run).
# Sections: synthetic workloads (tests/bench/bench_hooks.c: seconds of the work itself), real
# programs (cc1, sqlite3, python3: wall seconds of the whole process), report analysis speed.
# docs/performance.md explains every column and holds the figures of one run.
#
#   scripts/bench.sh BUILD_DIR
#   environment: RUNS (paired runs per workload, default 5), ITERS (synthetic iterations,
#   default 1000000), REPORT_CALLS (report section, default 50000000), BENCH_ONLY (space-
#   separated section names to run: synthetic real report; default all), CC1_FUNCS (size of the
#   generated C file, default 60), SQL_ROWS (default 100000), PY_ROUNDS (default 4)
set -euo pipefail
build=${1:?usage: bench.sh BUILD_DIR}
runs=${RUNS:-5}
iters=${ITERS:-1000000}
only=${BENCH_ONLY:-synthetic real report}
bench="$build/bench/bench_hooks"
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
have_ht=0
command -v heaptrack >/dev/null 2>&1 && have_ht=1

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { sed -n 's/^seconds \([0-9.]*\).*/\1/p'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0 && a != "-") printf "%.2f", a / b; else print "-"}'; }
section() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# Program calls recorded in a trace: the "events" object of the JSON report (allocator and
# mapping calls; stack definitions and snapshots are not program calls).
calls_in() {
    "$build/memtrace-report" --json "$1" |
        awk '/"events": \{/{on=1; next} on && /\}/{on=0} on && !/dropped/ {gsub(/[",:]/," "); s+=$2} END {print s+0}'
}
# Bytes of the files matching a glob, summed (a workload may write one trace per process).
bytes_of() { cat "$@" 2>/dev/null | wc -c; }
first() { echo "$1"; } # first match of a glob
row() { printf '%-26s %10s %10s %7s %11s %7s %8s %8s\n' "$@"; }
header() { row workload native_s memtrace_s ratio heaptrack_s ratio B/ev ht_B/ev; }

# ---- synthetic workloads ----------------------------------------------------------------------
# spec: mode threads [extra environment for the memtrace run]
if section synthetic; then
    echo "synthetic workloads (tests/bench/bench_hooks.c; seconds of the work, start-up and exit excluded)"
    header
    for spec in "churn 1" "churn 2" "churn 8" "deep 1" "realloc 1" "mmap 1" \
        "churn 1 MEMTRACE_COMPRESS=1" "churn 2 MEMTRACE_COMPRESS=1" \
        "churn 1 MEMTRACE_SAMPLE=512K" "churn 2 MEMTRACE_SAMPLE=512K"; do
        read -r -a words <<< "$spec"
        mode=${words[0]} threads=${words[1]}
        extra=("${words[@]:2}")
        n=$iters
        [ "$mode" = mmap ] && n=$((iters / 10))
        per_thread=$((n / threads))
        : > "$tmp/native" ; : > "$tmp/mt" ; : > "$tmp/ht"
        htbytes=0
        for _ in $(seq "$runs"); do
            "$bench" "$threads" "$per_thread" "$mode" | secs >> "$tmp/native"
            rm -f "$tmp"/t.*
            env ${extra[@]+"${extra[@]}"} LD_PRELOAD="$build/libmemtrace.so" MEMTRACE_OUTPUT="$tmp/t.%p" \
                "$bench" "$threads" "$per_thread" "$mode" | secs >> "$tmp/mt"
            if [ $have_ht = 1 ]; then
                rm -f "$tmp"/ht.*
                heaptrack -o "$tmp/ht.%p" "$bench" "$threads" "$per_thread" "$mode" 2>/dev/null |
                    secs >> "$tmp/ht" || true
                htbytes=$(bytes_of "$tmp"/ht.*)
                rm -f "$tmp"/ht.*
            fi
        done
        nat=$(median < "$tmp/native")
        mt=$(median < "$tmp/mt")
        trace=$(first "$tmp"/t.*)
        events=$(calls_in "$trace")
        # a sampled trace records a fraction of the calls: bytes per program call instead
        case " ${extra[*]-} " in *MEMTRACE_SAMPLE=*) events=$((2 * per_thread * threads)) ;; esac
        ht=-
        [ -s "$tmp/ht" ] && ht=$(median < "$tmp/ht")
        name="$mode x$threads"
        [ ${#extra[@]} -gt 0 ] && name="$name ${extra[*]#MEMTRACE_}"
        row "$name" "$nat" "$mt" "$(ratio "$mt" "$nat")" "$ht" "$(ratio "$ht" "$nat")" \
            "$(ratio "$(bytes_of "$trace")" "$events")" "$(ratio "$htbytes" "$events")"
    done
    echo "($((iters * 2)) calls a row, mmap rows $((iters / 5)); median of $runs paired runs)"
fi

# ---- real programs ----------------------------------------------------------------------------
# Wall seconds of the whole process (start-up, exit and, under heaptrack, its interpreter and
# compressor finishing). Each workload: name, then the command.
wall() { # run [VAR=value ...] command quietly (through env), print "seconds peak_rss_kb"
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$tmp/rss" env "$@" > /dev/null 2> "$tmp/err" || {
        echo "bench: failed: $*" >&2
        cat "$tmp/err" >&2
        return 1
    }
    t1=$(date +%s.%N)
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') $(tail -n 1 "$tmp/rss")"
}
real_workload() {
    local name=$1
    shift
    : > "$tmp/native" ; : > "$tmp/mt" ; : > "$tmp/ht" ; : > "$tmp/nrss"
    local htbytes=0 s k
    for _ in $(seq "$runs"); do
        read -r s k < <(wall "$@")
        echo "$s" >> "$tmp/native"
        echo "$k" >> "$tmp/nrss"
        rm -f "$tmp"/t.*
        read -r s k < <(wall LD_PRELOAD="$build/libmemtrace.so" MEMTRACE_OUTPUT="$tmp/t.%p" "$@")
        echo "$s" >> "$tmp/mt"
        if [ $have_ht = 1 ]; then
            rm -f "$tmp"/ht.*
            read -r s k < <(wall heaptrack -o "$tmp/ht.%p" "$@")
            echo "$s" >> "$tmp/ht"
            htbytes=$(bytes_of "$tmp"/ht.*)
            rm -f "$tmp"/ht.*
        fi
    done
    local nat mt ht=- trace events
    nat=$(median < "$tmp/native")
    mt=$(median < "$tmp/mt")
    [ -s "$tmp/ht" ] && ht=$(median < "$tmp/ht")
    trace=$(first "$tmp"/t.*)
    events=$(calls_in "$trace")
    row "$name" "$nat" "$mt" "$(ratio "$mt" "$nat")" "$ht" "$(ratio "$ht" "$nat")" \
        "$(ratio "$(bytes_of "$trace")" "$events")" "$(ratio "$htbytes" "$events")"
    printf '%-26s %s program calls, %s trace bytes, program peak RSS %s MB\n' "" "$events" \
        "$(bytes_of "$trace")" "$(awk '{k=$1} END {printf "%.1f", k / 1024}' "$tmp/nrss")"
}
if section real; then
    echo
    echo "real programs (wall seconds of the whole process)"
    header
    cc1=$(gcc -print-prog-name=cc1)
    python3 "$here/tests/bench/gen_c.py" "${CC1_FUNCS:-100}" > "$tmp/input.c"
    real_workload "cc1 -O2 ($(wc -l < "$tmp/input.c") lines)" "$cc1" -quiet -O2 "$tmp/input.c" -o "$tmp/out.s"
    # The report on the last cc1 trace: does it finish, and in how much memory against cc1's own.
    read -r rs rk < <(wall "$build/memtrace-report" "$(first "$tmp"/t.*)") || rs=failed
    printf '%-26s report finished in %s s, peak RSS %s MB (cc1 itself: %s MB)\n' "" "$rs" \
        "$(awk -v k="${rk:-0}" 'BEGIN {printf "%.1f", k / 1024}')" \
        "$(awk '{k=$1} END {printf "%.1f", k / 1024}' "$tmp/nrss")"
    if command -v sqlite3 >/dev/null 2>&1; then
        python3 "$here/tests/bench/gen_sql.py" "${SQL_ROWS:-100000}" > "$tmp/inserts.sql"
        # a fresh database file each run (.open --new truncates it), the script read from a file
        real_workload "sqlite3 (${SQL_ROWS:-100000} inserts)" \
            sqlite3 :memory: ".open --new $tmp/db" ".read $tmp/inserts.sql"
    else
        echo "sqlite3: not installed (scripts/install-deps.sh installs it), skipped"
    fi
    # the interpreter itself, not a version manager's wrapper script around it
    py=$(python3 -c 'import sys; print(sys.executable)')
    real_workload "python3 (dict/list/json)" "$py" "$here/tests/bench/py_workload.py" "${PY_ROUNDS:-4}"
    echo "(median of $runs paired runs)"
fi

echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
    "$(uname -r), $(ldd --version | head -n 1)"
section report || exit 0

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
rtrace=$(first "$tmp"/rt.*)
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
    hfile=$(first "$tmp"/hrt*)
    if [ -f "$hfile" ]; then
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
