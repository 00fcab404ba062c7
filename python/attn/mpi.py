"""attn.mpi - attention across machines (libattn_mpi) with mpi4py communicators.

`import attn` does not import this module, mpi4py or MPI; `import attn.mpi`
loads libattn_mpi (and so MPI) but still not mpi4py: a communicator is any
object with mpi4py's `py2f()` (its Fortran handle).

    from mpi4py import MPI
    import attn.mpi
    out = attn.mpi.sdpa(MPI.COMM_WORLD, q, k, v, layout="zigzag", causal="top_left")

Each rank passes its shard of one long sequence and gets out (and lse) for
its own queries over ALL keys of every rank; see include/attn_mpi.h.
"""

import numpy as np

from ._convert import _causal, _to4
from . import _attn_mpi

LAYOUTS = {"contiguous": 0, "zigzag": 1}


def shard(layout, n, rank, size):
    """The runs [(start, length), ...] of global positions that `rank` of
    `size` holds of n tokens: "contiguous" (one near-equal run per rank) or
    "zigzag" (n cut in 2*size near-equal chunks, rank r holds chunks r and
    2*size-1-r, which balances causal work)."""
    if layout not in LAYOUTS:
        raise ValueError("layout must be 'contiguous' or 'zigzag', got %r" % (layout,))
    return _attn_mpi.shard(LAYOUTS[layout], int(n), int(rank), int(size))


def positions(runs):
    """The positions of runs [(start, length), ...] as one int64 array."""
    return np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in runs])


def _runs(pos):
    """Positions (1-D integers, in the order of the local tokens) as flat
    (start, length) pairs: one pair per run of consecutive positions."""
    p = np.asarray(pos, dtype=np.int64).reshape(-1)
    if p.size == 0:
        return []
    cut = np.flatnonzero(np.diff(p) != 1) + 1
    starts = np.concatenate(([0], cut))
    ends = np.concatenate((cut, [p.size]))
    flat = []
    for a, b in zip(starts, ends):
        flat += [int(p[a]), int(b - a)]
    return flat


def sdpa(comm, q, k, v, *, q_positions=None, k_positions=None, layout=None, causal="none",
         scale=None, window_left=-1, window_right=-1, softcap=0.0, alibi_slopes=None,
         sinks=None, mode="exact", return_lse=False, num_threads=None):
    """Attention over a sequence split across the ranks of comm (collective).

    Every rank passes its shard, rank 4 (lower ranks get leading size-1 axes):
        q (B, H, Nq_local, d);  k (B, Hkv, Nkv_local, d);  v (B, Hkv, Nkv_local, dv)
        -> out (B, H, Nq_local, dv)  [, lse (B, H, Nq_local)]
    with the global position of each local token:
        q_positions, k_positions: 1-D integer arrays (Nq_local and Nkv_local
            values, at most 16 runs of consecutive positions each); the key
            positions of all ranks together must cover one range exactly once;
        or layout="contiguous" | "zigzag": this rank's shard of the sequence of
            N = sum of every rank's Nkv_local tokens (see shard()), for both.
    causal: "none", or "top_left" / "bottom_right" (the same here: key
    position <= query position). scale (None: 1/sqrt(d)), window_left,
    window_right, softcap, alibi_slopes (H values), sinks (H values): as in
    attn.sdpa, in global positions. mode: "exact" (bit for bit equal to
    attn.sdpa over the whole sequence) or "ring" (rotating K/V, within 1e-5).
    num_threads: this rank's threads (None: every online CPU).

    Errors are collective: if any rank's arguments are wrong or disagree
    with the others', every rank raises (ValueError, with the same message
    naming the rank), none waits forever. One exception: every rank must
    choose the same way of giving positions (layout on all ranks, or
    q_positions/k_positions on all), since layout adds a collective of its
    own (comm.allgather of the shard lengths).
    """
    cf = comm.py2f()
    failure, n_local = None, -1
    try:
        q4, k4, v4 = _to4(q), _to4(k), _to4(v)
        n_local = int(k4.shape[2])
    except Exception as e:
        failure = e
    if layout is not None:  # every rank passes layout: this gather is collective
        info = comm.allgather((n_local, None if failure is None else str(failure)))
        bad = [(r, m) for r, (_, m) in enumerate(info) if m is not None]
        if bad:
            if failure is not None:
                raise failure
            raise ValueError("mpi.sdpa: rank %d: %s" % bad[0])
        n = sum(c for c, _ in info)
    try:
        if layout is not None:
            if q_positions is not None or k_positions is not None:
                raise ValueError("mpi.sdpa: give layout or q_positions/k_positions, not both")
            runs = shard(layout, n, comm.Get_rank(), comm.Get_size())
            qr = kr = [x for r in runs for x in r]
        elif failure is None:
            if q_positions is None or k_positions is None:
                raise ValueError("mpi.sdpa: give q_positions and k_positions, or layout")
            qr, kr = _runs(q_positions), _runs(k_positions)
        if failure is None:
            causal = _causal(causal)
    except Exception as e:
        failure = failure or e
    if failure is not None:  # take part in the collective check, then raise
        try:
            _attn_mpi.abstain(cf, "mpi.sdpa: %s" % (failure,))
        except ValueError:
            pass
        raise failure
    out, lse = _attn_mpi.sdpa(cf, q4, k4, v4, np.asarray(qr, np.int64), np.asarray(kr, np.int64),
                              scale, causal, window_left, window_right, softcap, alibi_slopes,
                              sinks, mode, num_threads, bool(return_lse))
    lead = np.asarray(q).shape[:-2]
    out = out.reshape(lead + out.shape[-2:])
    if return_lse:
        return out, lse.reshape(lead + lse.shape[-1:])
    return out
