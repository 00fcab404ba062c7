#!/usr/bin/env bash
# bench/candidates.sh [ROUNDS] [BEFORE_REF] - the threading models measured
# side by side (docs/threads.md): the same loops (bench/loops.c) built
# against each way of linking OpenBLAS, run in turn, ROUNDS times (default 3).
#   before    BEFORE_REF (default b84fdf1, the tree before issue 10): the
#             system's pthread OpenBLAS running GEMMs on its own pool, no GEMV
#   before+passive  the same with OMP_WAIT_POLICY=passive
#   system    this tree, -DATTN_BLAS_LINK=system (GEMV ours, GEMMs on
#             OpenBLAS's pthread pool)
#   openmp    this tree, -DATTN_BLAS_LINK=openmp (libopenblas0-openmp, GEMMs
#             split over libgomp's threads, OpenBLAS single-threaded inside)
#   private   this tree, -DATTN_BLAS_LINK=private (the default: a private
#             static OpenBLAS, single-threaded, GEMMs split over attn's threads)
# Builds go to /tmp/attn-cand-*; only the two benchmark programs are built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
before=${2:-b84fdf1}
threads=${THREADS:-2}
seconds=${SECONDS_PER_PART:-0.3} # repetitions of each part, per round
cfg=(-DCMAKE_BUILD_TYPE=Release -DATTN_PYTHON=OFF -DATTN_CLI=OFF)
build() { # dir src [cmake args]
    local dir=$1 src=$2
    shift 2
    cmake -S "$src" -B "$dir" "${cfg[@]}" "$@" > "$dir.log" 2>&1
    cmake --build "$dir" --target attn_loops -j2 >> "$dir.log" 2>&1
}
rm -rf /tmp/attn-cand-before-src
mkdir -p /tmp/attn-cand-before-src
git -C "$root" archive "$before" | tar -x -C /tmp/attn-cand-before-src
# the loop benchmark itself comes from this tree
cp "$root/bench/loops.c" "$root/bench/common.h" /tmp/attn-cand-before-src/bench/
grep -q attn_loops /tmp/attn-cand-before-src/bench/CMakeLists.txt ||
    printf 'add_executable(attn_loops EXCLUDE_FROM_ALL loops.c)\ntarget_link_libraries(attn_loops PRIVATE attn_static m)\n' \
        >> /tmp/attn-cand-before-src/bench/CMakeLists.txt
build /tmp/attn-cand-before /tmp/attn-cand-before-src
for v in system openmp private; do build /tmp/attn-cand-$v "$root" -DATTN_BLAS_LINK=$v; done
names=(before before+passive system openmp private)
run() { # name -> command
    case $1 in
    before) /tmp/attn-cand-before/bench/attn_loops --threads "$threads" --rounds 1 --seconds "$seconds" ;;
    before+passive) OMP_WAIT_POLICY=passive /tmp/attn-cand-before/bench/attn_loops --threads "$threads" --rounds 1 --seconds "$seconds" ;;
    *) /tmp/attn-cand-$1/bench/attn_loops --threads "$threads" --rounds 1 --seconds "$seconds" ;;
    esac
}
echo "# command: bash bench/candidates.sh $rounds $before (THREADS=$threads SECONDS_PER_PART=$seconds)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
    for n in "${names[@]}"; do
        run "$n" | grep '^| [a-z]*:' | sed "s/^| /| $n | /" >> "$tmp/rows"
    done
    echo "# round $r of $rounds done, load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
# Per (model, loop): the round with the lowest iteration time.
echo
echo "| model | loop | part 1 alone ms | part 2 alone ms | sum ms | iteration ms | iteration / sum |"
echo "|---|---|---|---|---|---|---|"
for n in "${names[@]}"; do
    for l in decode prefill module; do
        grep "^| $n | $l:" "$tmp/rows" | sort -t'|' -k7 -g | head -1 |
            awk -F'|' -v n="$n" -v l="$l" '{printf "| %s | %s |%s|%s|%s|%s|%s|\n", n, l, $4, $5, $6, $7, $8}'
    done
done
