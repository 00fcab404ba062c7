#!/usr/bin/env bash
# bench/run.sh [BUILD_DIR] [THREADS] [attn_bench options...]
# Build and run the benchmark table of docs/performance.md (never part of the
# tests): NumPy and PyTorch are timed first on the same shapes by
# bench_py.py, then attn_bench prints everything with the ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
threads=${2:-2}
shift $(($# >= 2 ? 2 : $#))
# (re)configure so that bench/ is part of the build tree, then build the bench
cmake -S "$root" -B "$build" > /dev/null
cmake --build "$build" --target attn_bench -j2 > /dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# command: bash bench/run.sh $build $threads $*"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(uname -srm), $(nproc) CPUs"
if ! OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
    /usr/bin/python3 "$root/bench/bench_py.py" --threads "$threads" > "$tmp/py.txt"; then
    echo "# NumPy/PyTorch timing failed; their columns stay empty" | tee "$tmp/py.txt"
fi
OPENBLAS_NUM_THREADS=$threads "$build/bench/attn_bench" --threads "$threads" --py "$tmp/py.txt" "$@"
