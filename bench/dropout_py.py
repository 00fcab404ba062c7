#!/usr/bin/env python3
"""Forward with dropout 0.1 against the same call without, alternated, best
of R calls each (docs/performance.md, "Backward (training) and dropout").

    PYTHONPATH=build/python /usr/bin/python3 bench/dropout_py.py [R]
"""
import sys
import time

import numpy as np

import attn

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 15
r = np.random.default_rng(0)
for name, shape, causal in (("S1", (1, 12, 1024, 64), "top_left"), ("S3", (8, 12, 256, 64), "none"),
                            ("S2", (1, 8, 4096, 64), "none")):
    q = r.standard_normal(shape).astype(np.float32)
    best = {0.0: 1e9, 0.1: 1e9}
    for rep in range(max(2, reps // 4) if name == "S2" else reps):
        for p in (0.0, 0.1):
            t0 = time.perf_counter()
            attn.sdpa(q, q, q, causal=causal, dropout_p=p, seed=1, num_threads=2)
            best[p] = min(best[p], time.perf_counter() - t0)
    print("%s plain %.1f ms, dropout %.1f ms, ratio %.3f"
          % (name, best[0.0] * 1e3, best[0.1] * 1e3, best[0.1] / best[0.0]))
