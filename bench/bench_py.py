"""Time NumPy and PyTorch on the benchmark shapes of bench/bench.c.

Usage: OPENBLAS_NUM_THREADS=T /usr/bin/python3 bench/bench_py.py --threads T

Prints notes (lines starting with '#': versions, which BLAS NumPy uses) and
one line per case: "NAME numpy_seconds torch_seconds" (best of several runs;
nan when skipped). attn_bench --py FILE reads it.

Both libraries compute attention the plain way, as their users would:
  s = q @ k^T * scale (+ causal mask of -inf above the diagonal)
  out = softmax(s, -1) @ v
M1 is the whole module: NumPy x @ Wqkv + b, heads, attention, @ Wo + bo;
PyTorch nn.MultiheadAttention (batch_first, causal attn_mask).
L1 (N = 65536) is skipped: both would materialise 16 GiB of scores.
G1..G8 are NumPy's x (M, 4096) @ W (4096, 6144) for attn_gemv_bench.
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np

CASES = [
    # name, B, H, Nq, Nkv, d, causal
    ("S1", 1, 12, 1024, 1024, 64, True),
    ("S2", 1, 8, 4096, 4096, 64, False),
    ("S2c", 1, 8, 4096, 4096, 64, True),
    ("S3", 8, 12, 256, 256, 64, False),
    ("S4", 1, 32, 1, 4096, 128, False),
    ("S5", 4, 8, 128, 512, 64, False),
    ("S4L", 1, 32, 1, 32768, 128, False),
]
M1 = (4, 512, 768, 12)  # B, N, D, H


def best_time(fn, min_s):
    fn()  # warm-up
    best, total, reps = float("inf"), 0.0, 0
    while reps < 3 or (total < min_s and reps < 50):
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        best, total, reps = min(best, t), total + t, reps + 1
    return best


def numpy_blas():
    """The BLAS library NumPy has loaded, from the process's memory map."""
    a = np.ones((64, 64), np.float32)
    a @ a
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                name = line.split()[-1]
                base = os.path.basename(name)
                if "blas" in base or "lapack" in base or "mkl" in base:
                    libs.add(os.path.realpath(name))
    except OSError:
        pass
    return ", ".join(sorted(libs)) or "unknown"


def causal_mask(nq, nkv):
    m = np.zeros((nq, nkv), np.float32)
    m[np.triu_indices(nq, 1, nkv)] = -np.inf
    return m


def np_sdpa(q, k, v, mask):
    s = q @ np.swapaxes(k, -1, -2)
    s *= np.float32(1.0 / np.sqrt(q.shape[-1]))
    if mask is not None:
        s += mask
    s -= s.max(-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(-1, keepdims=True)
    return s @ v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    min_s = 0.3 if args.quick else 1.0
    env_t = os.environ.get("OPENBLAS_NUM_THREADS")
    if env_t != str(args.threads):
        print(f"# warning: OPENBLAS_NUM_THREADS={env_t}, expected {args.threads}")
    print(f"# numpy {np.__version__}, BLAS: {numpy_blas()}, OPENBLAS_NUM_THREADS={env_t}")
    try:
        import torch
    except ImportError:
        print("# torch not installed: its column stays empty")
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
        print(f"# torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}")
    rng = np.random.default_rng(0)

    with torch.no_grad() if torch is not None else contextlib.nullcontext():
        for name, B, H, nq, nkv, d, causal in CASES:
            q = rng.uniform(-1, 1, (B, H, nq, d)).astype(np.float32)
            k = rng.uniform(-1, 1, (B, H, nkv, d)).astype(np.float32)
            v = rng.uniform(-1, 1, (B, H, nkv, d)).astype(np.float32)
            mask = causal_mask(nq, nkv) if causal else None
            t_np = best_time(lambda: np_sdpa(q, k, v, mask), min_s)
            if torch is None:
                print(f"{name} {t_np:.6e} nan", flush=True)
                continue
            tq, tk, tv = torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v)
            tm = torch.from_numpy(mask) if causal else None
            scale = 1.0 / float(np.sqrt(d))

            def t_sdpa():
                s = torch.matmul(tq, tk.transpose(-1, -2)) * scale
                if tm is not None:
                    s = s + tm
                return torch.matmul(torch.softmax(s, -1), tv)

            t_pt = best_time(t_sdpa, min_s)
            print(f"{name} {t_np:.6e} {t_pt:.6e}", flush=True)

        B, N, D, H = M1
        hs = D // H
        x = rng.uniform(-1, 1, (B, N, D)).astype(np.float32)
        W = (rng.uniform(-1, 1, (D, 3 * D)) * 0.05).astype(np.float32)
        bW = rng.uniform(-1, 1, 3 * D).astype(np.float32)
        Wo = (rng.uniform(-1, 1, (D, D)) * 0.05).astype(np.float32)
        bo = rng.uniform(-1, 1, D).astype(np.float32)
        mask = causal_mask(N, N)

        def np_module():
            qkv = (x @ W + bW).reshape(B, N, 3, H, hs).transpose(2, 0, 3, 1, 4)
            a = np_sdpa(qkv[0], qkv[1], qkv[2], mask)
            return a.transpose(0, 2, 1, 3).reshape(B, N, D) @ Wo + bo

        t_np = best_time(np_module, min_s)
        if torch is None:
            print(f"M1 {t_np:.6e} nan")
            print("L1 nan nan")
            return 0
        mha = torch.nn.MultiheadAttention(D, H, batch_first=True)
        mha.in_proj_weight.copy_(torch.from_numpy(W.T.copy()))
        mha.in_proj_bias.copy_(torch.from_numpy(bW))
        mha.out_proj.weight.copy_(torch.from_numpy(Wo.T.copy()))
        mha.out_proj.bias.copy_(torch.from_numpy(bo))
        mha.eval()
        tx = torch.from_numpy(x)
        tmask = torch.ones(N, N, dtype=torch.bool).triu(1)
        t_pt = best_time(lambda: mha(tx, tx, tx, attn_mask=tmask, need_weights=False), min_s)
        print(f"M1 {t_np:.6e} {t_pt:.6e}")
        print("L1 nan nan")
    gemv_rows(rng, min_s)
    return 0


def gemv_rows(rng, min_s):
    """G1..G8: NumPy's x (M, 4096) @ W (4096, 6144), the decode projections
    of attn_gemv_bench (NumPy's own OpenBLAS: sgemv for M = 1, sgemm above)."""
    W = (rng.uniform(-1, 1, (4096, 6144)) * 0.02).astype(np.float32)
    for m in range(1, 9):
        x = rng.uniform(-1, 1, (m, 4096)).astype(np.float32)
        print(f"G{m} {best_time(lambda: x @ W, min_s):.6e} nan", flush=True)


if __name__ == "__main__":
    sys.exit(main())
