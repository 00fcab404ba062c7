"""The binding releases what it takes: after successful and failing calls,
every argument's reference count is what it was (python/ext/convert.c's
args_release on every path), and results own their memory alone."""
import sys

import numpy as np
import pytest

import attn
from attn import _attn


def _arrays():
    rng = np.random.default_rng(5)
    return dict(q=rng.standard_normal((1, 2, 4, 8)).astype(np.float32),
                q64=rng.standard_normal((1, 2, 4, 8)),
                mask=np.zeros((4, 4)), kl=np.array([4], np.uint64), big=np.array([2**64 - 1],
                                                                                 np.uint64),
                sinks=np.array([0.0, 1.0]), bad_sinks=np.array([0.0, np.nan]),
                huge=np.full((4, 4), -1e39), x=rng.standard_normal((3, 8)),
                W=rng.standard_normal((8, 24)), Wp=np.eye(8))


def _calls(a):
    q, q64 = a["q"], a["q64"]
    ok = [
        lambda: _attn.sdpa(q, q64, q, mask=a["mask"], key_lengths=a["kl"], want_lse=True,
                           window_left=1, softcap=3.0, alibi_slopes=a["sinks"],
                           sinks=a["sinks"]),
        lambda: _attn.merge([q, q], [q[..., 0], q[..., 0]]),
        lambda: _attn.mha_fused(a["x"], None, a["W"], None, 2, a["Wp"]),
        lambda: _attn.softmax(q64),
    ]
    bad = [
        lambda: _attn.sdpa(q, q, q, key_lengths=a["big"]),
        lambda: _attn.sdpa(q, q, q, sinks=a["bad_sinks"]),
        lambda: _attn.sdpa(q, q, q, mask=a["huge"]),
        lambda: _attn.sdpa(q, q[..., :3], q),
        lambda: _attn.sdpa(q, q, q, num_threads=1.5),
        lambda: _attn.merge([q, q], [q[..., 0]]),
        lambda: _attn.mha_fused(a["x"], None, a["W"], None, 5, a["Wp"]),
        lambda: attn.sdpa(q, q, q, causal=True, key_lengths=[3]),
    ]
    return ok, bad


def test_reference_counts_are_restored():
    a = _arrays()
    ok, bad = _calls(a)
    for f in ok + bad:  # warm up caches and interned objects
        try:
            f()
        except (ValueError, TypeError, OverflowError):
            pass
    before = {k: sys.getrefcount(v) for k, v in a.items()}
    for _ in range(200):
        for f in ok:
            r = f()
            del r
        for f in bad:
            with pytest.raises((ValueError, TypeError, OverflowError)):
                f()
    after = {k: sys.getrefcount(v) for k, v in a.items()}
    assert after == before


def test_results_own_their_memory():
    q = _arrays()["q"]
    out, lse, w = _attn.sdpa(q, q, q, want_lse=True, want_weights=True)
    assert [r.base is None and r.flags.owndata for r in (out, lse, w)] == [True] * 3
    # Only the name and getrefcount's own argument hold each result.
    assert (sys.getrefcount(out), sys.getrefcount(lse), sys.getrefcount(w)) == (2, 2, 2)
