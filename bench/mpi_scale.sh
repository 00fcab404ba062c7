#!/usr/bin/env bash
# bench/mpi_scale.sh [BUILD_DIR] [ROUNDS] [RUN...] - the scale-out table of
# docs/scale-out.md (never part of the tests). One host: H=8 Hkv=8 d=64
# N=16384 causal, each configuration one mpirun of bench_mpi (one timed
# attn_mpi_sdpa call; time = max over ranks of the whole call); the
# configurations run alternated, ROUNDS times (default 3), best kept.
# Then the byte count against the model on a non-causal run (every rank
# needs every key there) and the paper estimate from the measured rate.
# RUN...: only these runs (names of the table, e.g. np1x2 np2x1).
# Ranks spin while waiting (mpi_yield_when_idle 0) unless ranks x threads
# exceed the cores (oversubscribed runs yield).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
rounds=${2:-3}
shift $(($# >= 2 ? 2 : $#))
only=" $* "
cmake -S "$root" -B "$build" > /dev/null
cmake --build "$build" --target bench_mpi -j2 > /dev/null
bin="$build/bench/bench_mpi"
run="$root/mpi/run_mpi.sh"
# Single-copy (CMA) when this host allows it: receivers then pull a message in
# one call instead of waiting for the sender to push fragments between its
# attn calls.
if ATTN_MPI_SINGLE_COPY=cma bash "$run" 2 60 "$bin" 1024 1 1 8 0 1 0 1 > /dev/null 2>&1; then
    export ATTN_MPI_SINGLE_COPY=cma
fi
cores=$(nproc)
echo "# command: bash bench/mpi_scale.sh $build $rounds"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(uname -srm), $cores CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# single-copy mechanism: ${ATTN_MPI_SINGLE_COPY:-none}; the machine is SHARED with other jobs: timings are noisy"
N=16384 H=8 Hkv=8 d=64
# name np threads causal layout(0 contiguous, 1 zigzag) mode(0 exact, 1 ring) N
configs=(
  "np1x2 1 2 1 1 0 $N"
  "np2x1 2 1 1 1 0 $N"
  "np1x1 1 1 1 1 0 $N"
  "np2x1-contiguous 2 1 1 0 0 $N"
  "np2x1-ring 2 1 1 1 1 $N"
  "np2x2 2 2 1 1 0 $N"
  "np4x1 4 1 1 1 0 $N"
  "bytes-np2 2 1 0 1 0 8192"
  "bytes-np4 4 1 0 1 0 8192"
)
if [ "$only" != "  " ]; then
    sel=()
    for c in "${configs[@]}"; do
        case "$only" in *" ${c%% *} "*) sel+=("$c") ;; esac
    done
    configs=("${sel[@]}")
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
    for c in "${configs[@]}"; do
        set -- $c
        name=$1
        y=0
        [ $(($2 * $3)) -gt "$cores" ] && y=1
        line=$(ATTN_MPI_YIELD=$y bash "$run" "$2" 600 "$bin" "$7" $H $Hkv $d "$4" "$5" "$6" "$3")
        echo "$line" >> "$tmp/$name"
        echo "# round $r $name: $line" >&2
    done
done
printf '\n| run | ranks x threads | time s (best of %s) | compute max/mean | blocked on K/V max s | testing max s | sync max s | bytes sent/rank max, mean (model) | K/V buffers/rank | GFLOP/s | output hash |\n' "$rounds"
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for c in "${configs[@]}"; do
    set -- $c
    name=$1
    over=""
    [ $(($2 * $3)) -gt "$cores" ] && over=" (oversubscribed)"
    sort -t= -k1,1 "$tmp/$name" | awk -v name="$name" -v over="$over" '
      { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        if (best == "" || v["seconds"] + 0 < best + 0) {
          best = v["seconds"]
          row = sprintf("| %s | %sx%s%s | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f, %.2f MB (%.2f) | %.2f MB | %.1f | %s |",
            name, v["np"], v["threads"], over, v["seconds"], v["compute_max"] / (v["compute_mean"] > 0 ? v["compute_mean"] : 1),
            v["wait_max"], v["test_max"], v["sync_max"], v["bytes_max"] / 1e6, v["bytes_mean"] / 1e6, v["bytes_model"] / 1e6,
            v["kvbuf_max"] / 1e6, v["gflops"], v["hash"])
        } }
      END { print row }'
done
[ -f "$tmp/np1x2" ] && [ -f "$tmp/np2x1" ] || exit 0
base=$(awk '{for(i=1;i<=NF;i++){split($i,kv,"=");if(kv[1]=="seconds")print kv[2]}}' "$tmp/np1x2" | sort -g | head -1)
two=$(awk '{for(i=1;i<=NF;i++){split($i,kv,"=");if(kv[1]=="seconds")print kv[2]}}' "$tmp/np2x1" | sort -g | head -1)
rate=$(awk '{for(i=1;i<=NF;i++){split($i,kv,"=");if(kv[1]=="gflops")print kv[2]}}' "$tmp/np1x2" | sort -g | tail -1)
echo
echo "speed of np=2 x 1 thread relative to np=1 x 2 threads (zigzag, exact): $(awk -v a="$base" -v b="$two" 'BEGIN{printf "%.3f", a/b}') (target >= 0.8)"
echo "exact-mode output hashes (equal = bit-identical across rank counts, contiguous and zigzag):"
for n in np1x2 np2x1 np1x1 np2x1-contiguous np2x2 np4x1; do
    [ -f "$tmp/$n" ] || continue
    printf '  %s %s\n' "$n" "$(sed -n 's/.*hash=\([0-9a-f]*\).*/\1/p' "$tmp/$n" | sort -u | tr '\n' ' ')"
done
echo
/usr/bin/python3 "$root/bench/scale_estimate.py" --gflops "$rate"
