"""attn.sdpa and attn.merge against the float64 reference in numpy_ref.py.
Tolerances: see numpy_ref.py (rtol 1e-4, atol 2e-5); lse compared with atol 1e-4."""

import numpy as np
import pytest

import attn
import numpy_ref
from numpy_ref import close, randn

SHAPES = [  # (B, H, Hkv, Nq, Nkv, d, dv)
    (1, 1, 1, 1, 1, 1, 1),
    (1, 1, 1, 1, 17, 8, 8),
    (2, 3, 3, 7, 7, 5, 5),
    (1, 4, 2, 13, 31, 16, 7),
    (2, 8, 1, 5, 3, 32, 32),
    (1, 2, 2, 64, 64, 64, 64),
    (1, 6, 3, 33, 75, 40, 24),
    (3, 2, 1, 1, 129, 80, 80),
    (1, 1, 1, 130, 130, 72, 72),
]


def make(rng, B, H, Hkv, Nq, Nkv, d, dv, dtype=np.float64):
    return (randn(rng, B, H, Nq, d, dtype=dtype), randn(rng, B, Hkv, Nkv, d, dtype=dtype),
            randn(rng, B, Hkv, Nkv, dv, dtype=dtype))


@pytest.mark.parametrize("algo", ["auto", "reference", "flash"])
@pytest.mark.parametrize("shape", SHAPES)
def test_plain(rng, shape, algo):
    q, k, v = make(rng, *shape)
    out, lse = attn.sdpa(q, k, v, return_lse=True, algo=algo)
    r_out, r_lse, _ = numpy_ref.sdpa(q, k, v)
    assert out.dtype == np.float64
    close(out, r_out)
    close(lse, r_lse, atol=1e-4)


def test_einsum_form_and_repeat(rng):
    """Grouped-query attention equals attention on np.repeat-ed K and V."""
    q, k, v = make(rng, 2, 6, 2, 9, 11, 8, 4)
    out = attn.sdpa(q, k, v)
    kr, vr = np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1)
    s = np.einsum("bhie,bhje->bhij", q, kr) / np.sqrt(8)
    ref = np.einsum("bhij,bhjf->bhif", numpy_ref.softmax(s), vr)
    close(out, ref)
    close(attn.sdpa(q, kr, vr), ref)


@pytest.mark.parametrize("causal", ["top_left", "bottom_right"])
@pytest.mark.parametrize("Nq,Nkv", [(1, 1), (7, 7), (5, 12), (12, 5), (1, 40), (33, 70)])
def test_causal(rng, causal, Nq, Nkv):
    q, k, v = make(rng, 2, 4, 2, Nq, Nkv, 16, 8)
    out, lse = attn.sdpa(q, k, v, causal=causal, return_lse=True)
    r_out, r_lse, _ = numpy_ref.sdpa(q, k, v, causal=causal)
    close(out, r_out)
    close(lse, r_lse, atol=1e-4)
    if Nq > Nkv and causal == "bottom_right":
        # the first Nq - Nkv queries see no key: zeros, lse -inf
        assert np.array_equal(out[:, :, : Nq - Nkv], np.zeros_like(out[:, :, : Nq - Nkv]))
        assert np.all(np.isneginf(lse[:, :, : Nq - Nkv]))


def test_causal_forms_agree_when_square(rng):
    q, k, v = make(rng, 1, 2, 2, 9, 9, 8, 8)
    a = attn.sdpa(q, k, v, causal="top_left")
    b = attn.sdpa(q, k, v, causal="bottom_right")
    close(a, b, rtol=0, atol=1e-6)
    # and causal differs from no mask (the test can fail)
    assert np.abs(a - attn.sdpa(q, k, v)).max() > 1e-2


def test_key_lengths(rng):
    q, k, v = make(rng, 4, 2, 1, 6, 10, 8, 8)
    L = np.array([10, 3, 1, 0])
    for causal in ("none", "top_left", "bottom_right"):
        out, lse = attn.sdpa(q, k, v, key_lengths=L, causal=causal, return_lse=True)
        r_out, r_lse, _ = numpy_ref.sdpa(q, k, v, key_lengths=L, causal=causal)
        close(out, r_out)
        close(lse, r_lse, atol=1e-4)
    assert np.array_equal(out[3], np.zeros_like(out[3]))  # L = 0: nothing visible


def test_invisible_keys_never_reach_output(rng):
    q, k, v = make(rng, 1, 1, 1, 4, 8, 4, 4)
    L = [5]
    k[0, 0, 5:] = np.nan
    v[0, 0, 5:] = np.inf
    out = attn.sdpa(q, k, v, key_lengths=L)
    assert np.all(np.isfinite(out))
    close(out, numpy_ref.sdpa(q[..., :], k[:, :, :5], v[:, :, :5])[0])


@pytest.mark.parametrize("mshape", [(1, 1, 1, 9), (2, 1, 5, 9), (1, 3, 1, 1), (5, 9), (9,),
                                    (2, 3, 5, 9)])
def test_mask_broadcast(rng, mshape):
    q, k, v = make(rng, 2, 3, 3, 5, 9, 8, 6)
    mask = randn(rng, *mshape, dtype=np.float32)
    mask[mask < -1.0] = -np.inf
    out = attn.sdpa(q, k, v, mask=mask)
    close(out, numpy_ref.sdpa(q, k, v, mask=mask)[0])


def test_mask_strided_and_broadcast_to(rng):
    q, k, v = make(rng, 2, 2, 2, 4, 6, 8, 8)
    base = np.where(rng.random((6, 4)) < 0.3, -np.inf, 0.0).astype(np.float32)
    m = np.broadcast_to(base.T, (2, 2, 4, 6))  # zero strides, transposed
    close(attn.sdpa(q, k, v, mask=m), numpy_ref.sdpa(q, k, v, mask=m)[0])


def test_finite_mask_keeps_key_visible(rng):
    q, k, v = make(rng, 1, 1, 1, 2, 3, 4, 4)
    mask = np.array([0.0, -1e9, -np.inf], np.float32)
    out = attn.sdpa(q, k, v, mask=mask)
    # with -1e9 the key is visible but weighs nothing next to key 0
    close(out, np.broadcast_to(v[0, 0, 0], out.shape))
    mask_only = np.array([-np.inf, -1e9, -np.inf], np.float32)
    out = attn.sdpa(q, k, v, mask=mask_only)
    close(out, np.broadcast_to(v[0, 0, 1], out.shape))


def test_fully_masked_rows_give_zeros(rng):
    q, k, v = make(rng, 1, 2, 2, 3, 4, 4, 5)
    mask = np.zeros((1, 2, 3, 4), np.float32)
    mask[0, 1, 2, :] = -np.inf
    mask[0, 0, 0, :] = -np.inf
    for algo in ("reference", "flash"):
        out, lse, w = attn.sdpa(q, k, v, mask=mask, return_lse=True, return_weights=True,
                                algo=algo)
        assert np.array_equal(out[0, 1, 2], np.zeros(5))
        assert np.array_equal(out[0, 0, 0], np.zeros(5))
        assert np.isneginf(lse[0, 1, 2]) and np.isneginf(lse[0, 0, 0])
        assert not np.any(np.isnan(out)) and not np.any(np.isnan(w))
        assert np.array_equal(w[0, 1, 2], np.zeros(4))
        close(out, numpy_ref.sdpa(q, k, v, mask=mask)[0])


def test_scale(rng):
    q, k, v = make(rng, 1, 2, 2, 5, 6, 8, 8)
    for scale in (0.1, 1.0, 0.5):
        close(attn.sdpa(q, k, v, scale=scale), numpy_ref.sdpa(q, k, v, scale=scale)[0])
    assert np.abs(attn.sdpa(q, k, v, scale=1.0) - attn.sdpa(q, k, v)).max() > 1e-3


def test_return_weights(rng):
    q, k, v = make(rng, 2, 4, 2, 6, 9, 8, 8)
    mask = np.where(rng.random((6, 9)) < 0.2, -np.inf, 0.0)
    out, w = attn.sdpa(q, k, v, causal="bottom_right", mask=mask, return_weights=True)
    r_out, _, r_w = numpy_ref.sdpa(q, k, v, causal="bottom_right", mask=mask)
    close(w, r_w)
    close(out, r_out)
    rows = w.sum(-1)[np.any(r_w > 0, -1)]
    close(rows, np.ones_like(rows))


@pytest.mark.parametrize("rank", [2, 3])
def test_lower_ranks(rng, rank):
    q, k, v = make(rng, 1, 2, 2, 5, 7, 4, 3)
    q, k, v = (a[0] if rank == 3 else a[0, 0] for a in (q, k, v))
    out, lse, w = attn.sdpa(q, k, v, return_lse=True, return_weights=True)
    assert out.shape == q.shape[:-1] + (3,)
    assert lse.shape == q.shape[:-1]
    assert w.shape == q.shape[:-1] + (7,)
    r = numpy_ref.sdpa(q.reshape((1,) * (4 - rank) + q.shape), k.reshape((1,) * (4 - rank) + k.shape),
                  v.reshape((1,) * (4 - rank) + v.shape))
    close(out, r[0].reshape(out.shape))


def test_dropout_keep_fraction_and_scaling(rng):
    """With V = identity, out is the dropped, rescaled weight matrix."""
    B, H, N = 2, 3, 64
    p, seed = 0.25, 1234
    q = randn(rng, B, H, N, 16)
    k = randn(rng, B, H, N, 16)
    v = np.broadcast_to(np.eye(N), (B, H, N, N))
    w0 = attn.sdpa(q, k, v)  # = the weights without dropout
    close(w0, numpy_ref.sdpa(q, k, v)[2])
    out, w = attn.sdpa(q, k, v, dropout_p=p, seed=seed, return_weights=True)
    keep = np.array([[[[attn.dropout_keep(seed, b, h, i, j, p) for j in range(N)]
                       for i in range(N)] for h in range(H)] for b in range(B)])
    frac = keep.mean()
    n = keep.size
    assert abs(frac - (1 - p)) < 4 * np.sqrt(p * (1 - p) / n)
    expect = np.where(keep, w0 / (1 - p), 0.0)
    close(out, expect)  # the fast path drops exactly the same weights
    close(w, expect)  # and so does the reference path
    assert np.array_equal(out == 0, ~keep)
    # another seed drops other weights; the same seed the same ones
    out2 = attn.sdpa(q, k, v, dropout_p=p, seed=seed + 1)
    assert not np.array_equal(out2 == 0, out == 0)
    # the fast path (no weights asked) drops the same weights, bit-identical
    # from call to call, and agrees with the reference within tolerance
    fast = attn.sdpa(q, k, v, dropout_p=p, seed=seed)
    assert np.array_equal(fast == 0, ~keep)
    close(fast, out)
    assert np.array_equal(attn.sdpa(q, k, v, dropout_p=p, seed=seed), fast)


def test_dropout_keep_hash():
    """attn.dropout_keep is the documented splitmix64 hash."""
    M = (1 << 64) - 1

    def mix(z):
        z = (z + 0x9E3779B97F4A7C15) & M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)

    for seed, b, h, i, j, p in [(0, 0, 0, 0, 0, 0.5), (7, 1, 2, 3, 4, 0.1), (99, 0, 5, 17, 3, 0.9),
                                (2**63 + 5, 3, 1, 100, 200, 0.3)]:
        x = mix(mix(mix(mix(seed ^ b) ^ h) ^ i) ^ j)
        dropped = (x >> 40) < int(np.float32(p) * 16777216.0)
        assert attn.dropout_keep(seed, b, h, i, j, p) == (not dropped)


def test_merge(rng):
    q, k, v = make(rng, 2, 2, 2, 5, 23, 8, 6)
    full_out, full_lse = attn.sdpa(q, k, v, return_lse=True)
    cuts = [0, 4, 11, 23]
    outs, lses = [], []
    for a, b in zip(cuts[:-1], cuts[1:]):
        o, l = attn.sdpa(q, k[:, :, a:b], v[:, :, a:b], return_lse=True)
        outs.append(o)
        lses.append(l)
    out, lse = attn.merge(outs, lses)
    close(out, full_out, atol=1e-5)
    close(lse, full_lse, atol=1e-5)
    # merge written from its formula
    L = np.stack(lses)
    m = L.max(0)
    wts = np.exp(L - m)
    ref = (wts[..., None] * np.stack(outs)).sum(0) / wts.sum(0)[..., None]
    close(out, ref)


def test_merge_empty_parts(rng):
    q, k, v = make(rng, 1, 1, 1, 3, 4, 4, 4)
    mask = np.full((4,), -np.inf)
    o1, l1 = attn.sdpa(q, k, v, mask=mask, return_lse=True)
    o2, l2 = attn.sdpa(q, k, v, mask=mask, return_lse=True)
    out, lse = attn.merge([o1, o2], [l1, l2])
    assert np.array_equal(out, np.zeros_like(out)) and np.all(np.isneginf(lse))
    o3, l3 = attn.sdpa(q, k, v, return_lse=True)
    out, lse = attn.merge([o1, o3], [l1, l3])
    close(out, o3, rtol=0, atol=1e-6)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_isa(rng, isa):
    """Each instruction set the CPU runs gives the reference's results."""
    if not attn._attn.isa_supported({"generic": 1, "avx2": 2, "avx512": 3}[isa]):
        with pytest.raises(RuntimeError):
            attn.set_isa(isa)
        return
    q, k, v = make(rng, 2, 4, 2, 37, 70, 40, 24)
    mask = np.where(rng.random((37, 70)) < 0.2, -np.inf, 0.0)
    try:
        attn.set_isa(isa)
        assert attn.get_isa() == isa
        for algo in ("reference", "flash"):
            out, lse = attn.sdpa(q, k, v, mask=mask, causal="bottom_right", return_lse=True,
                                 algo=algo)
            r_out, r_lse, _ = numpy_ref.sdpa(q, k, v, mask=mask, causal="bottom_right")
            close(out, r_out)
            close(lse, r_lse, atol=1e-4)
    finally:
        attn.set_isa("auto")
