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
cmake --build "$build" --target attn_bench attn_bench_modifiers attn_bench_kv attn_gemv_bench attn_gemv_patterns attn_loops attn_bench_backward -j2 > /dev/null
# the Python extension for bench_torch.py (absent when configured without Python)
cmake --build "$build" --target attn_python -j2 > /dev/null 2>&1 || true
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on this machine to keep older
# OpenBLAS builds safe; they pin a slower kernel for every BLAS user, NumPy and
# our projections alike. The benchmark drops them (in its own commands only)
# when OpenBLAS then still multiplies correctly, checked here, and prints the
# kernel OpenBLAS picked. Tests and CI never change them.
run_env=(env)
dropped=kept
if [ -n "${OPENBLAS_CORETYPE:-}${OPENBLAS_L2_SIZE:-}" ] &&
   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 -c '
import numpy as np
r = np.random.default_rng(0)
a, b = r.random((512, 300), np.float32), r.random((300, 700), np.float32)
d = np.abs(a @ b - a.astype(np.float64) @ b.astype(np.float64)).max()
raise SystemExit(0 if d < 1e-3 else 1)' 2>/dev/null; then
    run_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
    dropped="dropped for this run"
fi
core=$("${run_env[@]}" OPENBLAS_VERBOSE=2 /usr/bin/python3 -c 'import numpy' 2>&1 | sed -n 's/^Core: //p')
# On a CPU newer than the OpenBLAS release, OpenBLAS falls back to its SSE3
# kernels ("Prescott"); attn's private copy then picks better ones itself
# (src/blas_core.c). NumPy's and PyTorch's OpenBLAS get the same kernels here,
# through OPENBLAS_CORETYPE, so that they are not compared on a handicap.
attn_core=$("$build/tools/attn/attn" --version 2>/dev/null | sed -n "s/.*; core \([A-Za-z0-9]*\) (attn's choice.*/\1/p")
if [ "$core" = Prescott ] && [ -n "$attn_core" ] && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    run_env+=(OPENBLAS_CORETYPE="$attn_core")
    core="$attn_core (set by bench/run.sh: OpenBLAS chose Prescott)"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# command: bash bench/run.sh $build $threads $*"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(uname -srm), $(nproc) CPUs"
echo "# OpenBLAS kernel: ${core:-unknown}; OPENBLAS_CORETYPE ${OPENBLAS_CORETYPE:-unset} in the environment, $dropped"
if ! "${run_env[@]}" OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
    /usr/bin/python3 "$root/bench/bench_py.py" --threads "$threads" > "$tmp/py.txt"; then
    echo "# NumPy/PyTorch timing failed; their columns stay empty" | tee "$tmp/py.txt"
fi
# Every table of the run, saved for its picture (bench/plot.py).
{
"${run_env[@]}" OPENBLAS_NUM_THREADS=$threads "$build/bench/attn_bench" --threads "$threads" --py "$tmp/py.txt" "$@"
# The score modifiers against the same cases without them (docs/performance.md,
# "Score modifiers"); with MODIFIERS_CPU=1 timed in process CPU time.
echo
"${run_env[@]}" "$build/bench/attn_bench_modifiers" --threads "$threads" ${MODIFIERS_CPU:+--cpu}
# The KV-cache table (decode and chunked prefill over attn_kv_*, docs/performance.md "KV cache").
echo
"${run_env[@]}" OPENBLAS_NUM_THREADS=$threads "$build/bench/attn_bench_kv" --threads "$threads"
} | tee "$build/bench.txt"
# The picture of this run (docs/performance.md shows one): BENCH_PNG names it.
png=${BENCH_PNG:-$build/bench.png}
/usr/bin/python3 "$root/bench/plot.py" "$build/bench.txt" "$png" ||
    echo "# no picture: bench/plot.py failed (python3-matplotlib missing?)"
# Decode-shaped projections against the stream and NumPy, then the loops
# users write against the sum of their parts (docs/threads.md).
echo
echo "Decode-shaped projections, attn_linear(x (M, 4096), W (4096, 6144)), against a read-only stream over W and NumPy's x @ W:"
echo
"${run_env[@]}" "$build/bench/attn_gemv_bench" --threads "$threads" --py "$tmp/py.txt" | grep -v '^# attn_gemv_bench'
echo
echo "The same with W (4096, 49152), 768 MiB: beyond any last-level cache (no NumPy column):"
echo
"${run_env[@]}" "$build/bench/attn_gemv_bench" --threads "$threads" --columns 49152 --rounds 2 | grep -v '^# attn_gemv_bench'
echo
echo "The orders W can be read in, with a product's multiply-adds, against the stream (AVX-512 only; docs/threads.md):"
echo
"${run_env[@]}" "$build/bench/attn_gemv_patterns" | grep -v '^# attn_gemv_patterns: W'
echo
echo "The loops users write: each iteration against the sum of its parts alone, same run (C, then Python):"
echo
"${run_env[@]}" "$build/bench/attn_loops" --threads "$threads" | grep -v '^# attn_loops'
echo
echo "The same C loops with the caches swept before every timed call (--cold: where the last-level cache holds W or K and V, parts alone run from it and the iteration does not):"
echo
"${run_env[@]}" "$build/bench/attn_loops" --threads "$threads" --cold --rounds 2 | grep -v '^# attn_loops'
if [ -f "$build/python/attn/__init__.py" ]; then
    echo
    # by default, then with the README's two settings ("Threads")
    for e in "" "GOMP_SPINCOUNT=10000 OPENBLAS_THREAD_TIMEOUT=4"; do
        if [ -n "$e" ]; then printf '\nThe same with %s:\n\n' "$e"; fi
        "${run_env[@]}" $e PYTHONPATH="$build/python" OPENBLAS_NUM_THREADS=$threads \
            /usr/bin/python3 "$root/bench/loops_py.py" --threads "$threads" | grep -v '^# numpy'
    done
    printf '\nThe Python loops with the caches swept before every timed call (--cold), no setting:\n\n'
    "${run_env[@]}" PYTHONPATH="$build/python" OPENBLAS_NUM_THREADS=$threads \
        /usr/bin/python3 "$root/bench/loops_py.py" --threads "$threads" --cold --rounds 2 | grep -v '^# numpy'
    echo
    echo "CPU burnt by each pool while idle after a call (the cores the next library loses):"
    echo
    for e in "" GOMP_SPINCOUNT=10000 "GOMP_SPINCOUNT=10000 OPENBLAS_THREAD_TIMEOUT=4"; do
        "${run_env[@]}" $e PYTHONPATH="$build/python" OPENBLAS_NUM_THREADS=$threads \
            /usr/bin/python3 "$root/bench/idle_spin.py"
    done
fi
# The backward rows (forward, backward and dropout forward alternated, same SGEMM check).
echo
"${run_env[@]}" OPENBLAS_NUM_THREADS=$threads "$build/bench/attn_bench_backward" --threads "$threads"
# attn.torch against PyTorch 1.13: attention forward + backward (S1, S2c, S3,
# best thread count each) and the training example (docs/torch.md).
echo
"${run_env[@]}" PYTHONPATH="$build/python" /usr/bin/python3 "$root/bench/bench_torch.py" \
    --train-args "--png $build/train_char_transformer.png" | tee "$build/bench_torch.txt" ||
    echo "# bench/bench_torch.py failed"
