"""The Python loops users write, against the sum of their parts.

Usage: PYTHONPATH=<build>/python OPENBLAS_NUM_THREADS=T /usr/bin/python3 bench/loops_py.py --threads T

Each loop is one step of a model, timed as a whole (per iteration), and
each part is timed alone (repeated back to back) in the same run:

  numpy    NumPy x (1, 4096) @ W (4096, 6144) (NumPy's own OpenBLAS and its
           threads), then attn.sdpa of one query, GQA 32/8, Nkv 8192 (64 MiB of K and V: more than the
           last-level cache, as a real cache), d 128
  numpy256 the same with x (256, 4096) (a GEMM) and attn.sdpa causal over 256 tokens
  attn     attn.linear (1, 4096) @ (4096, 6144), then attn.sdpa as above
  torch    torch.set_num_threads(T): torch.nn.functional.linear (1, 4096) x
           (6144, 4096)^T and a softmax on torch's intra-op pool, then
           attn.sdpa as above on the tensors' memory

Prints markdown rows: loop, part 1 alone, part 2 alone, sum, iteration,
iteration / sum (ms). The three kinds are timed in short interleaved bursts,
each the best over all repetitions of all rounds: on a shared machine, the
speed when the others let us run; a pool fight slows every iteration.
--cold: before every timed call, an untimed read over twice the last-level
cache, so that parts alone and iterations all start from memory (where that
cache holds W or K and V, parts repeated alone run from it and the iteration,
whose parts evict each other, does not: bench/loops.c says more).
"""
import argparse
import os
import sys
import time

import numpy as np

import attn


def llc_bytes():
    """The L3 size Linux reports for CPU 0 (as bench/loops.c's sysconf), or 128 MiB."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            size = f.read().strip()
        n = int(size[:-1]) << {"K": 10, "M": 20}[size[-1]] if size[-1] in "KM" else int(size)
    except (OSError, ValueError, IndexError):
        n = 0
    return n if n >= 32 << 20 else 128 << 20


def interleaved(a, b, min_s, best, sweep=None):
    """Best times of a alone, b alone and a then b, in short interleaved
    bursts (4 calls, the first not counted: it follows the other kind) until
    the iterations have run about min_s: all three see the same moments of
    a shared machine."""
    kinds = [a, b, lambda: (a(), b())]
    total = 0.0
    bursts = 0
    while bursts < 3 or total < min_s:
        for k, fn in enumerate(kinds):
            for rep in range(4):
                if sweep is not None:
                    sweep()
                t0 = time.perf_counter()
                fn()
                t = time.perf_counter() - t0
                if rep == 0:
                    continue
                best[k] = min(best[k], t)
                if k == 2:
                    total += t
        bursts += 1
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=None)
    ap.add_argument("--cold", action="store_true", help="sweep the caches before every timed call")
    ap.add_argument("--seconds", type=float, default=0.3, help="repetitions per part and round")
    args = ap.parse_args()
    nt = args.threads
    min_s = 0.1 if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    rng = np.random.default_rng(0)
    D, NQKV, H, HKV, HD, NKV, NP = 4096, 6144, 32, 8, 128, 8192, 256
    W = (rng.uniform(-1, 1, (D, NQKV)) * 0.02).astype(np.float32)
    x1 = rng.uniform(-1, 1, (1, D)).astype(np.float32)
    xp = rng.uniform(-1, 1, (NP, D)).astype(np.float32)
    q = rng.uniform(-1, 1, (1, H, 1, HD)).astype(np.float32)
    k = rng.uniform(-1, 1, (1, HKV, NKV, HD)).astype(np.float32)
    v = rng.uniform(-1, 1, (1, HKV, NKV, HD)).astype(np.float32)
    qp = rng.uniform(-1, 1, (1, H, NP, HD)).astype(np.float32)
    kp = rng.uniform(-1, 1, (1, HKV, NP, HD)).astype(np.float32)
    vp = rng.uniform(-1, 1, (1, HKV, NP, HD)).astype(np.float32)

    def sdpa1():
        attn.sdpa(q, k, v, num_threads=nt)

    def sdpap():
        attn.sdpa(qp, kp, vp, causal="top_left", num_threads=nt)

    loops = [
        ("numpy", "NumPy (1,4096)@(4096,6144) + attn.sdpa decode", lambda: x1 @ W, sdpa1),
        ("numpy256", "NumPy (256,4096)@(4096,6144) + attn.sdpa causal N=256", lambda: xp @ W,
         sdpap),
        ("attn", "attn.linear (1,4096)@(4096,6144) + attn.sdpa decode",
         lambda: attn.linear(x1, W, num_threads=nt), sdpa1),
    ]
    try:
        import torch

        torch.set_num_threads(nt)
        tW = torch.from_numpy(np.ascontiguousarray(W.T))
        tx = torch.from_numpy(x1)
        ts = torch.from_numpy(rng.uniform(-1, 1, (64, 4096)).astype(np.float32))

        def torch_part():
            with torch.no_grad():
                torch.nn.functional.linear(tx, tW)
                torch.softmax(ts, -1)

        loops.append(("torch", f"torch F.linear (1,4096)x(6144,4096)^T + softmax (64,4096), "
                      f"torch.set_num_threads({nt}), + attn.sdpa decode", torch_part, sdpa1))
        print(f"# torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}")
    except ImportError:
        print("# torch not installed: no torch loop")
    sweep = None
    if args.cold:
        evict = np.ones(2 * llc_bytes() // 4, np.float32)
        sweep = evict.sum  # one thread: no pool woken
        print(f"# --cold: {evict.nbytes >> 20} MiB read before every timed call")
    print(f"# numpy {np.__version__}; {attn.build_info()}")
    best = {}
    for _ in range(rounds):
        for name, what, a, b in loops:
            if args.only and name != args.only:
                continue
            best[name] = interleaved(a, b, min_s, best.get(name, [float("inf")] * 3), sweep)
    print("| loop | part 1 alone ms | part 2 alone ms | sum ms | iteration ms | iteration / sum |")
    print("|---|---|---|---|---|---|")
    for name, what, _, _ in loops:
        if name not in best:
            continue
        ta, tb, ti = best[name]
        s = ta + tb
        print(f"| {name}: {what} | {ta * 1e3:.3f} | {tb * 1e3:.3f} | {s * 1e3:.3f} | "
              f"{ti * 1e3:.3f} | {ti / s:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
