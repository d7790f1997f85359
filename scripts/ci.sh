#!/bin/bash
# scripts/ci.sh: every check, for CI jobs beyond .ci/run and before pushing. In order:
#   shell      sh -n / bash -n on every script, then shellcheck
#   format     make check-format (clang-format)
#   test       .ci/run: the README's test command from a clean build (DEVELOPER=1, -Werror)
#   sanitize   make DEVELOPER=1 SANITIZE=address,undefined test, from a clean build
#   demo       make demo
# `scripts/ci.sh shell format` runs only those steps. shellcheck and clang-format come from
# `scripts/install-deps.sh --dev`; when one is missing its check is reported as skipped, never
# silently passed. Exits non-zero at the first failing step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

all_steps="shell format test sanitize demo"
sh_scripts="scripts/install-deps.sh scripts/memtrace.in scripts/demo.sh"
bash_scripts=".ci/run scripts/ci.sh"

step() {
    printf '\n==== ci: %s\n' "$*"
}

skip() {
    printf 'ci: SKIPPED %s\n' "$*"
}

run_shell() {
    step "shell syntax"
    for f in $sh_scripts; do sh -n "$f"; done
    for f in $bash_scripts; do bash -n "$f"; done
    if command -v shellcheck >/dev/null 2>&1; then
        step "shellcheck"
        # memtrace.in is a POSIX sh template; @LIBDIR@-style placeholders are plain strings.
        # shellcheck disable=SC2086 # one word per file
        shellcheck -s sh $sh_scripts
        # shellcheck disable=SC2086
        shellcheck -s bash $bash_scripts
    else
        skip "shellcheck: not installed (scripts/install-deps.sh --dev)"
    fi
}

run_format() {
    if command -v clang-format >/dev/null 2>&1; then
        step "make check-format"
        make check-format
    else
        skip "check-format: clang-format not installed (scripts/install-deps.sh --dev)"
    fi
}

run_test() {
    step ".ci/run"
    .ci/run
}

run_sanitize() {
    # A clean build: objects compiled without the sanitizer flags must not be reused.
    step "make DEVELOPER=1 SANITIZE=address,undefined test"
    make clean
    make DEVELOPER=1 SANITIZE=address,undefined test 2>&1
    make clean
}

run_demo() {
    step "make demo"
    make demo
}

steps=${*:-$all_steps}
for s in $steps; do
    case " $all_steps " in
    *" $s "*) "run_$s" ;;
    *)
        echo "ci.sh: unknown step '$s' (steps: $all_steps)" >&2
        exit 1
        ;;
    esac
done
printf '\n==== ci: all steps passed: %s\n' "$steps"
