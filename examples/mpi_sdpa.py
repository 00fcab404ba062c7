#!/usr/bin/env python3
"""examples/mpi_sdpa.py - causal attention over one sequence split across MPI ranks.

    mpirun -np 4 python3 examples/mpi_sdpa.py [--n 3000] [--mode exact|ring]
    (on one machine as in the tests: bash mpi/run_mpi.sh 4 60 /usr/bin/python3 examples/mpi_sdpa.py)

Every rank makes the same whole sequence from one seed, keeps its zigzag
shard of it, and calls attn.mpi.sdpa; then it compares its rows with
single-process attn.sdpa over the whole sequence: bit for bit in exact
mode, within 1e-5 in ring mode. Exit status 0 when every rank agrees.
"""
import argparse
import sys

import numpy as np
from mpi4py import MPI

import attn
import attn.mpi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--mode", choices=("exact", "ring"), default="exact")
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(0)  # the same whole sequence on every rank
    q = rng.standard_normal((1, a.heads, a.n, a.d), dtype=np.float32)
    k = rng.standard_normal((1, a.kv_heads, a.n, a.d), dtype=np.float32)
    v = rng.standard_normal((1, a.kv_heads, a.n, a.d), dtype=np.float32)

    pos = attn.mpi.positions(attn.mpi.shard("zigzag", a.n, rank, size))  # this rank's tokens
    out, lse = attn.mpi.sdpa(comm, q[:, :, pos], k[:, :, pos], v[:, :, pos], layout="zigzag",
                             causal="top_left", mode=a.mode, return_lse=True, num_threads=1)

    ref, ref_lse = attn.sdpa(q, k, v, causal="top_left", return_lse=True)
    if a.mode == "exact":
        ok = np.array_equal(out, ref[:, :, pos]) and np.array_equal(lse, ref_lse[:, :, pos])
        what = "bit-identical to single-process attn.sdpa"
    else:
        err = max(np.abs(out - ref[:, :, pos]).max(), np.abs(lse - ref_lse[:, :, pos]).max())
        ok = err <= 1e-5
        what = "within 1e-5 of attn.sdpa (max difference %.2g)" % err
    oks = comm.gather(ok, root=0)
    if rank == 0:
        print("mpi_sdpa: %d ranks, N=%d, %s mode: %s on %d of %d ranks"
              % (size, a.n, a.mode, what, sum(oks), size))
    return 0 if comm.allreduce(ok, op=MPI.LAND) else 1


if __name__ == "__main__":
    sys.exit(main())
