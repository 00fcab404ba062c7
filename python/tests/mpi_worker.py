"""Run under mpirun by test_mpi.py: attn.mpi.sdpa on every rank, checks
that raise AssertionError (non-zero exit) on any mismatch."""
import numpy as np
from mpi4py import MPI

import attn
import attn.mpi

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(7)
B, H, Hkv, N, d = 2, 4, 2, 1300, 24
q = rng.uniform(-1, 1, (B, H, N, d)).astype(np.float32)
k = rng.uniform(-1, 1, (B, Hkv, N, d)).astype(np.float32)
v = rng.uniform(-1, 1, (B, Hkv, N, d)).astype(np.float32)
sinks = rng.uniform(0, 2, H).astype(np.float32)

# 1. layout, causal: bit-identical to attn.sdpa
ref, rl = attn.sdpa(q, k, v, causal="top_left", return_lse=True)
pos = attn.mpi.positions(attn.mpi.shard("zigzag", N, rank, size))
out, lse = attn.mpi.sdpa(comm, q[:, :, pos], k[:, :, pos], v[:, :, pos], layout="zigzag",
                         causal="top_left", return_lse=True, num_threads=1)
assert np.array_equal(out, ref[:, :, pos]) and np.array_equal(lse, rl[:, :, pos])

# 2. explicit uneven positions (queries and keys sharded differently), float64 in
qpos = np.array_split(np.arange(N), size)[rank]
kcut = np.sort(np.random.default_rng(1).choice(np.arange(1, N), size - 1, replace=False))
kpos = np.split(np.arange(N), kcut)[size - 1 - rank]
out = attn.mpi.sdpa(comm, q[:, :, qpos].astype(np.float64), k[:, :, kpos], v[:, :, kpos],
                    q_positions=qpos, k_positions=kpos)
assert out.dtype == np.float64
assert np.array_equal(out, attn.sdpa(q, k, v)[:, :, qpos].astype(np.float64))

# 3. a disagreement: the last rank passes other head counts -> every rank raises the same
qq = q[:, :2] if rank == size - 1 else q
msgs = []
try:
    attn.mpi.sdpa(comm, qq[:, :, pos], k[:, :, pos], v[:, :, pos], layout="zigzag")
except ValueError as e:
    msgs.append(str(e))
if size > 1:
    allm = comm.allgather(msgs)
    assert all(m == allm[0] and len(m) == 1 for m in allm), allm
    assert "has H=2 but rank 0 has H=4" in allm[0][0], allm[0]

# 4. a rank whose Python arguments are refused still takes part: all raise
bad = "not an array" if rank == size - 1 else q[:, :, pos]
raised = 0
try:
    attn.mpi.sdpa(comm, bad, k[:, :, pos], v[:, :, pos], layout="zigzag")
except (ValueError, TypeError) as e:
    raised = 1
    if rank != size - 1:
        assert "rank %d" % (size - 1) in str(e), str(e)
assert comm.allreduce(raised) == size

# 5. ring mode within 1e-5 (and a sink per head: one more merged part)
out = attn.mpi.sdpa(comm, q[:, :, pos], k[:, :, pos], v[:, :, pos], layout="zigzag",
                    causal="top_left", mode="ring")
ref = attn.sdpa(q, k, v, causal="top_left")
assert np.abs(out - ref[:, :, pos]).max() <= 1e-5
ex = attn.mpi.sdpa(comm, q[:, :, pos], k[:, :, pos], v[:, :, pos], layout="zigzag",
                   causal="top_left", sinks=sinks)
ri = attn.mpi.sdpa(comm, q[:, :, pos], k[:, :, pos], v[:, :, pos], layout="zigzag",
                   causal="top_left", mode="ring", sinks=sinks)
assert np.abs(ex - ri).max() <= 1e-5 and not np.array_equal(ex, out)
comm.Barrier()
if rank == 0:
    print("mpi_worker: %d ranks ok" % size)
