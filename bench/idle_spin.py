"""How much CPU each pool burns while idle, right after a call.

Usage: PYTHONPATH=<build>/python OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/idle_spin.py

After a call, a thread pool's workers wait for the next one; they spin for
a while before sleeping. Spinning takes a core from whatever runs next (the
other pool's work): that is the fight of the loops in docs/threads.md. For
each kind of call: run it, then sleep 300 ms in the calling thread and
count the CPU time the process used meanwhile (getrusage: all threads),
the median and the largest of 9 tries. CPU time, not wall time, so a loaded machine
does not change the figure much.
"""
import os
import resource
import sys
import time

import numpy as np

import attn


def idle_cpu_ms(fn, sleep_s=0.3, tries=9):
    out = []
    for _ in range(tries):
        fn()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(sleep_s)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out.append(((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) * 1e3)
    out.sort()
    return out[len(out) // 2], out[-1]


def main():
    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, (4096, 6144)).astype(np.float32)
    x1 = rng.uniform(-1, 1, (1, 4096)).astype(np.float32)
    q = rng.uniform(-1, 1, (1, 32, 1, 128)).astype(np.float32)
    k = rng.uniform(-1, 1, (1, 8, 1024, 128)).astype(np.float32)
    names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS")
    env = {k: os.environ[k] for k in names if k in os.environ}
    print(f"# environment: {env or 'none of ' + ', '.join(names)}")
    rows = [
        ("nothing (baseline)", lambda: None),
        ("attn.sdpa decode, 2 threads (attn's OpenMP pool)",
         lambda: attn.sdpa(q, k, k, num_threads=2)),
        ("attn.linear (1,4096)@(4096,6144), 2 threads (attn's pool)",
         lambda: attn.linear(x1, W, num_threads=2)),
        ("NumPy (1,4096)@(4096,6144) (NumPy's OpenBLAS pool)", lambda: x1 @ W),
    ]
    try:
        import torch

        torch.set_num_threads(2)
        ts = torch.from_numpy(rng.uniform(-1, 1, (256, 4096)).astype(np.float32))
        rows.append(("torch.softmax (256,4096), torch.set_num_threads(2) (torch's OpenMP pool)",
                     lambda: torch.softmax(ts, -1)))
    except ImportError:
        pass
    print("| call, then 300 ms idle | CPU ms burnt while idle: median | max |")
    print("|---|---|---|")
    for name, fn in rows:
        med, mx = idle_cpu_ms(fn)
        print(f"| {name} | {med:.1f} | {mx:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
