#!/bin/bash
# fuzz/run.sh - build the libFuzzer targets with clang and run each one.
#   fuzz/run.sh [SECONDS]        fuzz every target SECONDS (default $FUZZ_SECONDS or 60)
# Environment:
#   FUZZ_BUILD    build directory (default build-fuzz)
#   FUZZ_TARGETS  targets to run (default "fuzz_api fuzz_diff fuzz_npy fuzz_kv")
#   FUZZ_JOBS     make -j for the build (default 2)
# Every target first replays fuzz/regressions/<target>/ (each file once: a
# crash fixed earlier must stay fixed), then fuzzes from fuzz/corpus/<target>/
# plus a working corpus in the build directory (the repo's seeds are not
# modified). Crashing inputs land in $FUZZ_BUILD/artifacts/<target>/; copy
# them to fuzz/regressions/<target>/ once fixed. Prints one line per target
# (seconds, executions, corpus size) and exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-${FUZZ_SECONDS:-60}}
BUILD=${FUZZ_BUILD:-build-fuzz}
TARGETS=${FUZZ_TARGETS:-"fuzz_api fuzz_diff fuzz_npy fuzz_kv"}
JOBS=${FUZZ_JOBS:-2}

cmake -S fuzz -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
    { echo "fuzz: configure failed (needs clang and libclang-rt-14-dev)"; exit 1; }
cmake --build "$BUILD" -j"$JOBS" >"$BUILD/build.log" 2>&1 ||
    { tail -30 "$BUILD/build.log"; echo "fuzz: build failed"; exit 1; }

declare -A MAXLEN=([fuzz_api]=1024 [fuzz_diff]=64 [fuzz_npy]=4096 [fuzz_kv]=2048)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in $TARGETS; do
    bin="$BUILD/$t"
    reg="fuzz/regressions/$t"
    nreg=0
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg" 2>/dev/null | grep -v '^README')" ]; then
        files=$(ls -d "$reg"/* | grep -v '/README')
        nreg=$(echo "$files" | wc -l)
        # shellcheck disable=SC2086
        if ! "$bin" $files >"$BUILD/$t.regress.log" 2>&1; then
            tail -40 "$BUILD/$t.regress.log"
            echo "fuzz: $t: a regression input fails again (log: $BUILD/$t.regress.log)"
            status=1
            continue
        fi
    fi
    work="$BUILD/corpus/$t"
    art="$BUILD/artifacts/$t/"
    mkdir -p "$work" "$art"
    log="$BUILD/$t.log"
    "$bin" "$work" "fuzz/corpus/$t" -max_total_time="$SECONDS_EACH" -max_len="${MAXLEN[$t]:-4096}" \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    units=$(ls "$work" | wc -l)
    printf 'fuzz: %-10s %4ss  %10s execs  %5s corpus units  %3s regressions replayed  %s\n' \
        "$t" "$SECONDS_EACH" "${execs:-?}" "$units" "$nreg" "$([ $rc -eq 0 ] && echo ok || echo FAILED)"
    if [ $rc -ne 0 ]; then
        grep -E 'ERROR|SUMMARY|==[0-9]+==|abort|: ' "$log" | head -20
        echo "fuzz: $t failed; log $log, crashing input in $art"
        status=1
    fi
done
exit $status
