"""attn.MultiHeadAttention against the einsum reference of numpy_ref.py.
Tolerances: see numpy_ref.py (rtol 1e-4, atol 2e-5)."""

import numpy as np
import pytest

import attn
import numpy_ref
from numpy_ref import close, randn, weights


def per_head(rng, NH, Dq, Dkv, HS, HSv, Dout, bias):
    p = dict(Wq=weights(rng, Dq, NH, Dq, HS), Wk=weights(rng, Dkv, NH, Dkv, HS),
             Wv=weights(rng, Dkv, NH, Dkv, HSv), Wo=weights(rng, NH * HSv, NH * HSv, Dout))
    if bias:
        p.update(bq=randn(rng, NH, HS), bk=randn(rng, NH, HS), bv=randn(rng, NH, HSv),
                 bo=randn(rng, Dout))
    return p


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("causal", ["none", "top_left"])
@pytest.mark.parametrize("B,N,D,NH,HS,HSv,Dout", [(1, 1, 3, 1, 1, 1, 3), (2, 7, 8, 2, 3, 5, 8),
                                                 (3, 13, 12, 3, 4, 4, 6), (1, 31, 16, 4, 8, 2, 1)])
def test_self_per_head(rng, B, N, D, NH, HS, HSv, Dout, causal, bias):
    p = per_head(rng, NH, D, D, HS, HSv, Dout, bias)
    m = attn.MultiHeadAttention(causal=causal, **p)
    x = randn(rng, B, N, D)
    out = m(x)
    assert out.shape == (B, N, Dout)
    close(out, numpy_ref.mha(x, None, causal=causal, **p))
    # lists of per-head matrices work the same
    m2 = attn.MultiHeadAttention(Wq=list(p["Wq"]), Wk=list(p["Wk"]), Wv=list(p["Wv"]),
                                 bq=None if not bias else list(p["bq"]),
                                 bk=None if not bias else list(p["bk"]),
                                 bv=None if not bias else list(p["bv"]), Wo=p["Wo"],
                                 bo=p.get("bo"), causal=causal)
    close(m2(x), out, rtol=0, atol=1e-6)
    # a single sequence (N, D)
    close(m(x[0]), out[0], atol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("B,Nq,Nkv,D,NH", [(1, 1, 1, 2, 1), (2, 5, 9, 8, 2), (2, 9, 4, 12, 3),
                                           (1, 17, 33, 32, 8)])
def test_fused_self_and_cross(rng, B, Nq, Nkv, D, NH, bias):
    W = weights(rng, D, D, 3 * D)
    bqkv = randn(rng, 3 * D) if bias else None
    Wo = weights(rng, D, D, D)
    bo = randn(rng, D) if bias else None
    m = attn.MultiHeadAttention(NH, Wqkv=W, bqkv=bqkv, Wo=Wo, bo=bo)
    Wq, Wk, Wv = numpy_ref.fused_to_heads(W, NH)
    bq = bk = bv = None
    if bias:
        bq, bk, bv = (b.reshape(NH, D // NH) for b in np.split(bqkv, 3))
    xq = randn(rng, B, Nq, D)
    xkv = randn(rng, B, Nkv, D)
    close(m(xq), numpy_ref.mha(xq, None, Wq, Wk, Wv, bq, bk, bv, Wo, bo))
    close(m(xq, xkv), numpy_ref.mha(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo))


def test_no_output_projection(rng):
    p = per_head(rng, 3, 6, 6, 2, 4, 6, True)
    del p["Wo"], p["bo"]
    x = randn(rng, 2, 5, 6)
    out = attn.MultiHeadAttention(**p)(x)
    assert out.shape == (2, 5, 12)
    close(out, numpy_ref.mha(x, None, **p))


def test_cross_different_widths(rng):
    p = per_head(rng, 2, 6, 10, 3, 3, 4, True)
    xq, xkv = randn(rng, 2, 3, 6), randn(rng, 2, 8, 10)
    close(attn.MultiHeadAttention(**p)(xq, xkv), numpy_ref.mha(xq, xkv, **p))


def test_mask_key_lengths_causal(rng):
    NH, D = 4, 16
    p = per_head(rng, NH, D, D, 4, 4, D, True)
    m = attn.MultiHeadAttention(**p)
    B, Nq, Nkv = 3, 6, 10
    xq, xkv = randn(rng, B, Nq, D), randn(rng, B, Nkv, D)
    L = np.array([10, 4, 7])
    mask = np.where(rng.random((B, NH, Nq, Nkv)) < 0.2, -np.inf, randn(rng, B, NH, Nq, Nkv))
    for causal in ("none", "top_left", "bottom_right"):
        out = m(xq, xkv, mask=mask, key_lengths=L, causal=causal)
        close(out, numpy_ref.mha(xq, xkv, causal=causal, mask=mask, key_lengths=L, **p))
    # per-call causal overrides the constructor's; here they differ
    mc = attn.MultiHeadAttention(causal="top_left", **p)
    close(mc(xq, xkv, causal="none"), m(xq, xkv), rtol=0, atol=1e-6)
    assert np.abs(mc(xq, xkv) - m(xq, xkv)).max() > 1e-3


def test_dropout_passes_through(rng):
    p = per_head(rng, 2, 8, 8, 4, 4, 8, False)
    m = attn.MultiHeadAttention(dropout_p=0.5, **p)
    x = randn(rng, 1, 16, 8)
    a, b = m(x, seed=1), m(x, seed=2)
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(m(x, seed=1), a)
    close(m(x, dropout_p=0.0), numpy_ref.mha(x, None, **p))


def test_torch_state_round_trip_numpy(rng):
    D, NH = 12, 3
    W = weights(rng, D, D, 3 * D, dtype=np.float32)
    m = attn.MultiHeadAttention(NH, Wqkv=W, bqkv=randn(rng, 3 * D, dtype=np.float32),
                                Wo=weights(rng, D, D, D, dtype=np.float32),
                                bo=randn(rng, D, dtype=np.float32))
    st = m.to_torch_state()
    assert st["in_proj_weight"].shape == (3 * D, D) and st["out_proj.weight"].shape == (D, D)
    np.testing.assert_array_equal(st["in_proj_weight"], W.T)
    m2 = attn.MultiHeadAttention.from_torch_state(st, NH)
    x = randn(rng, 2, 5, D)
    np.testing.assert_array_equal(m2(x), m(x))
    # per-head -> torch layout -> fused gives the same function
    p = per_head(rng, NH, D, D, D // NH, D // NH, D, True)
    mp = attn.MultiHeadAttention(**p)
    mf = attn.MultiHeadAttention.from_torch_state(mp.to_torch_state(), NH)
    assert mf.fused
    close(mf(x), mp(x), atol=1e-5)
    # without biases: no bias keys (PyTorch's bias=False layout)
    del p["bq"], p["bk"], p["bv"], p["bo"]
    st = attn.MultiHeadAttention(**p).to_torch_state()
    assert set(st) == {"in_proj_weight", "out_proj.weight"}


def test_constructor_errors(rng):
    with pytest.raises(ValueError):
        attn.MultiHeadAttention(Wqkv=np.zeros((4, 12)))  # num_heads missing
    with pytest.raises(ValueError):
        attn.MultiHeadAttention(Wq=np.zeros((2, 4, 2)))  # Wk, Wv missing
    with pytest.raises(ValueError):
        attn.MultiHeadAttention(3, Wq=np.zeros((2, 4, 2)), Wk=np.zeros((2, 4, 2)),
                                Wv=np.zeros((2, 4, 2)))  # 3 heads claimed, 2 given
    with pytest.raises(ValueError):
        attn.MultiHeadAttention(2, Wqkv=np.zeros((4, 12)), causal="yes")
