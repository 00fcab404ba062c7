"""The article's functions: attn's versions against NumPy code written as the
article writes it (float64), on the article's shapes and on awkward ones.
Tolerances: see numpy_ref.py (rtol 1e-4, atol 2e-5; float32 compute)."""

import numpy as np
import pytest

import attn
from numpy_ref import close, randn, weights, softmax, fused_to_heads

# ---------------------------------------------------------------------------
# The article's NumPy code, as a NumPy user writes it after reading it.
# ---------------------------------------------------------------------------


def np_softmax_lastdim(x):
    ex = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return ex / np.sum(ex, axis=-1, keepdims=True)


def np_self_attention(x, Wk, Wq, Wv):
    q = x @ Wq  # (N, HS)
    k = x @ Wk
    v = x @ Wv
    kq = q @ k.T / np.sqrt(k.shape[1])  # (N, N)
    att = np_softmax_lastdim(kq)
    return att @ v  # (N, HS)


def np_self_attention_batched(x, Wk, Wq, Wv):
    q = x @ Wq  # (B, N, HS)
    k = x @ Wk
    v = x @ Wv
    kq = q @ k.swapaxes(-2, -1) / np.sqrt(k.shape[-1])  # (B, N, N)
    att = np_softmax_lastdim(kq)
    return att @ v  # (B, N, HS)


def np_multihead_attention_list(x, Wqs, Wks, Wvs, Wp, do_mask=False):
    head_outs = []
    if do_mask:
        N = x.shape[1]
        mask = np.tril(np.ones((N, N)))
    for Wk, Wq, Wv in zip(Wks, Wqs, Wvs):
        q = x @ Wq
        k = x @ Wk
        v = x @ Wv
        kq = q @ k.swapaxes(-2, -1) / np.sqrt(k.shape[-1])
        if do_mask:
            kq = np.where(mask == 0, -np.inf, kq)
        att = np_softmax_lastdim(kq)
        head_outs.append(att @ v)
    return np.concatenate(head_outs, axis=-1) @ Wp


def np_multihead_cross_attention_list(xq, xv, Wqs, Wks, Wvs, Wp):
    head_outs = []
    for Wk, Wq, Wv in zip(Wks, Wqs, Wvs):
        q = xq @ Wq  # (B, Nq, HS)
        k = xv @ Wk  # (B, Nv, HS)
        v = xv @ Wv
        kq = q @ k.swapaxes(-2, -1) / np.sqrt(k.shape[-1])  # (B, Nq, Nv)
        att = np_softmax_lastdim(kq)
        head_outs.append(att @ v)
    return np.concatenate(head_outs, axis=-1) @ Wp


def np_multihead_attention_vec(x, W, NH, Wp, do_mask=False):
    B, N, D = x.shape
    qkv = x @ W  # (B, N, 3D)
    q, k, v = np.split(qkv, 3, axis=-1)
    HS = D // NH
    q = q.reshape(B, N, NH, HS).transpose(0, 2, 1, 3)  # (B, NH, N, HS)
    k = k.reshape(B, N, NH, HS).transpose(0, 2, 1, 3)
    v = v.reshape(B, N, NH, HS).transpose(0, 2, 1, 3)
    kq = q @ k.swapaxes(-1, -2) / np.sqrt(k.shape[-1])  # (B, NH, N, N)
    if do_mask:
        mask = np.tril(np.ones((N, N)))
        kq = np.where(mask == 0, -np.inf, kq)
    att = np_softmax_lastdim(kq)
    out = att @ v  # (B, NH, N, HS)
    return out.transpose(0, 2, 1, 3).reshape(B, N, D) @ Wp


def np_softmax_cols(x):
    ex = np.exp(x - np.max(x, axis=0, keepdims=True))
    return ex / np.sum(ex, axis=0, keepdims=True)


def np_self_attention_cols(x, Wk, Wq, Wv, Bk, Bq, Bv):
    q = Wq @ x + Bq  # (HS, N)
    k = Wk @ x + Bk
    v = Wv @ x + Bv
    kq = k.T @ q / np.sqrt(k.shape[0])  # (N, N), column i: query i
    att = np_softmax_cols(kq)
    return v @ att  # (HS, N)


# ---------------------------------------------------------------------------
# Drop-in: the article's shapes, float64 data, the article's call forms.
# ---------------------------------------------------------------------------

ART_N, ART_D, ART_HS, ART_B, ART_NH = 8, 512, 64, 4, 8


def test_drop_in_article_shapes(rng):
    N, D, HS, B, NH = ART_N, ART_D, ART_HS, ART_B, ART_NH
    x = rng.standard_normal((N, D))
    Wk, Wq, Wv = (rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(3))
    out = attn.self_attention(x, Wk, Wq, Wv)
    assert out.shape == (N, HS) and out.dtype == np.float64
    close(out, np_self_attention(x, Wk, Wq, Wv))

    xb = rng.standard_normal((B, N, D))
    out = attn.self_attention_batched(xb, Wk, Wq, Wv)
    assert out.shape == (B, N, HS) and out.dtype == np.float64
    close(out, np_self_attention_batched(xb, Wk, Wq, Wv))

    Wqs = [rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(NH)]
    Wks = [rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(NH)]
    Wvs = [rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(NH)]
    Wp = rng.standard_normal((NH * HS, D)) / np.sqrt(NH * HS)
    for do_mask in (False, True):
        out = attn.multihead_attention_list(xb, Wqs, Wks, Wvs, Wp, do_mask=do_mask)
        assert out.shape == (B, N, D)
        close(out, np_multihead_attention_list(xb, Wqs, Wks, Wvs, Wp, do_mask))

    W = rng.standard_normal((D, 3 * D)) / np.sqrt(D)
    Wp = rng.standard_normal((D, D)) / np.sqrt(D)
    for do_mask in (False, True):
        out = attn.multihead_attention_vec(xb, W, NH, Wp, do_mask=do_mask)
        assert out.shape == (B, N, D)
        close(out, np_multihead_attention_vec(xb, W, NH, Wp, do_mask))

    Nv = 11
    xv = rng.standard_normal((B, Nv, D))
    Wp = rng.standard_normal((NH * HS, D)) / np.sqrt(NH * HS)
    out = attn.multihead_cross_attention_list(xb, xv, Wqs, Wks, Wvs, Wp)
    assert out.shape == (B, N, D)
    close(out, np_multihead_cross_attention_list(xb, xv, Wqs, Wks, Wvs, Wp))

    xc = rng.standard_normal((D, N))
    Wkc, Wqc, Wvc = (rng.standard_normal((HS, D)) / np.sqrt(D) for _ in range(3))
    Bk, Bq, Bv = (rng.standard_normal((HS, 1)) for _ in range(3))
    out = attn.self_attention_cols(xc, Wkc, Wqc, Wvc, Bk, Bq, Bv)
    assert out.shape == (HS, N) and out.flags.c_contiguous
    close(out, np_self_attention_cols(xc, Wkc, Wqc, Wvc, Bk, Bq, Bv))


def test_drop_in_softmax_inside_article_code(rng):
    """attn.softmax_lastdim replaces the article's softmax inside its own code."""
    global np_softmax_lastdim
    x = rng.standard_normal((ART_B, ART_N, ART_D))
    Wqs = [weights(rng, ART_D, ART_D, ART_HS) for _ in range(ART_NH)]
    Wks = [weights(rng, ART_D, ART_D, ART_HS) for _ in range(ART_NH)]
    Wvs = [weights(rng, ART_D, ART_D, ART_HS) for _ in range(ART_NH)]
    Wp = weights(rng, ART_NH * ART_HS, ART_NH * ART_HS, ART_D)
    ref = np_multihead_attention_list(x, Wqs, Wks, Wvs, Wp, True)
    saved = np_softmax_lastdim
    np_softmax_lastdim = attn.softmax_lastdim
    try:
        got = np_multihead_attention_list(x, Wqs, Wks, Wvs, Wp, True)
    finally:
        np_softmax_lastdim = saved
    close(got, ref)


# ---------------------------------------------------------------------------
# Each function on many shapes, against the formulas.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (7,), (1, 1), (3, 1), (5, 13), (2, 3, 31),
                                   (2, 1, 4, 17), (2, 3, 1, 2, 5), (2, 1, 2, 3, 2, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_lastdim(rng, shape, dtype):
    x = randn(rng, *shape, scale=3.0, dtype=dtype)
    y = attn.softmax_lastdim(x)
    assert y.dtype == dtype and y.shape == x.shape
    close(y, softmax(x))
    close(y.sum(-1), np.ones(shape[:-1]))


def test_softmax_lastdim_stable_and_inf(rng):
    x = np.array([[1000.0, 1001.0, 999.0], [-np.inf, 0.0, -np.inf], [-np.inf] * 3])
    y = attn.softmax_lastdim(x)
    close(y[0], softmax(x[:1])[0])
    close(y[1], [0.0, 1.0, 0.0])
    assert np.array_equal(y[2], np.zeros(3))  # all -inf: zeros, not NaN


@pytest.mark.parametrize("shape", [(1,), (4,), (1, 1), (7, 3), (5, 1), (3, 4, 5), (2, 3, 4, 5),
                                   (3, 2, 2, 2, 2)])
def test_softmax_cols(rng, shape):
    x = randn(rng, *shape, scale=2.0)
    y = attn.softmax_cols(x)
    assert y.shape == x.shape and y.dtype == np.float64
    close(y, softmax(x, axis=0))
    close(y.sum(0), np.ones(shape[1:]))
    y32 = attn.softmax_cols(x.astype(np.float32))
    assert y32.dtype == np.float32
    close(y32, softmax(x, axis=0))


SA_SHAPES = [  # (N, D, HS)
    (1, 1, 1), (1, 8, 4), (5, 1, 3), (7, 13, 1), (13, 31, 17), (64, 64, 16), (33, 96, 40),
]


@pytest.mark.parametrize("N,D,HS", SA_SHAPES)
def test_self_attention(rng, N, D, HS):
    x = randn(rng, N, D)
    Wk, Wq, Wv = (weights(rng, D, D, HS) for _ in range(3))
    out = attn.self_attention(x, Wk, Wq, Wv)
    close(out, np_self_attention(x, Wk, Wq, Wv))
    # einsum form
    q, k, v = (np.einsum("nd,de->ne", x, W) for W in (Wq, Wk, Wv))
    ref = np.einsum("ij,jf->if", softmax(np.einsum("ie,je->ij", q, k) / np.sqrt(HS)), v)
    close(out, ref)


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("N,D,HS", SA_SHAPES)
def test_self_attention_batched(rng, B, N, D, HS):
    x = randn(rng, B, N, D)
    Wk, Wq, Wv = (weights(rng, D, D, HS) for _ in range(3))
    out = attn.self_attention_batched(x, Wk, Wq, Wv)
    assert out.shape == (B, N, HS)
    close(out, np_self_attention_batched(x, Wk, Wq, Wv))
    # a single sequence also works, and equals the batched row
    close(attn.self_attention_batched(x[0], Wk, Wq, Wv), out[0])


def test_self_attention_value_size_differs(rng):
    x = randn(rng, 2, 9, 12)
    Wk, Wq = weights(rng, 12, 12, 5), weights(rng, 12, 12, 5)
    Wv = weights(rng, 12, 12, 7)
    out = attn.self_attention_batched(x, Wk, Wq, Wv)
    assert out.shape == (2, 9, 7)
    close(out, np_self_attention_batched(x, Wk, Wq, Wv))


MH_SHAPES = [  # (B, N, D, NH, HS)
    (1, 1, 4, 1, 1), (2, 5, 6, 3, 2), (1, 13, 8, 2, 4), (3, 7, 16, 4, 3), (2, 31, 24, 6, 5),
]


@pytest.mark.parametrize("do_mask", [False, True])
@pytest.mark.parametrize("B,N,D,NH,HS", MH_SHAPES)
def test_multihead_attention_list(rng, B, N, D, NH, HS, do_mask):
    x = randn(rng, B, N, D)
    Wqs = [weights(rng, D, D, HS) for _ in range(NH)]
    Wks = [weights(rng, D, D, HS) for _ in range(NH)]
    Wvs = [weights(rng, D, D, HS) for _ in range(NH)]
    Wp = weights(rng, NH * HS, NH * HS, D)
    out = attn.multihead_attention_list(x, Wqs, Wks, Wvs, Wp, do_mask=do_mask)
    close(out, np_multihead_attention_list(x, Wqs, Wks, Wvs, Wp, do_mask))
    from numpy_ref import mha
    ref = mha(x, None, np.stack(Wqs), np.stack(Wks), np.stack(Wvs), Wo=Wp,
              causal="top_left" if do_mask else "none")
    close(out, ref)


@pytest.mark.parametrize("do_mask", [False, True])
@pytest.mark.parametrize("B,N,D,NH", [(1, 1, 1, 1), (2, 5, 6, 3), (1, 13, 8, 8), (3, 7, 12, 4),
                                      (2, 17, 64, 4)])
def test_multihead_attention_vec(rng, B, N, D, NH, do_mask):
    x = randn(rng, B, N, D)
    W = weights(rng, D, D, 3 * D)
    Wp = weights(rng, D, D, D)
    out = attn.multihead_attention_vec(x, W, NH, Wp, do_mask=do_mask)
    close(out, np_multihead_attention_vec(x, W, NH, Wp, do_mask))
    # the fused matrix is the per-head lists side by side
    from numpy_ref import mha
    Wq, Wk, Wv = fused_to_heads(W, NH)
    close(out, mha(x, None, Wq, Wk, Wv, Wo=Wp, causal="top_left" if do_mask else "none"))


@pytest.mark.parametrize("B,Nq,Nkv,D,Dkv,NH,HS", [
    (1, 1, 1, 2, 2, 1, 1), (2, 3, 11, 8, 8, 2, 4), (1, 13, 2, 6, 10, 3, 2), (2, 7, 31, 16, 5, 4, 3),
])
def test_multihead_cross_attention_list(rng, B, Nq, Nkv, D, Dkv, NH, HS):
    xq = randn(rng, B, Nq, D)
    xv = randn(rng, B, Nkv, Dkv)
    Wqs = [weights(rng, D, D, HS) for _ in range(NH)]
    Wks = [weights(rng, Dkv, Dkv, HS) for _ in range(NH)]
    Wvs = [weights(rng, Dkv, Dkv, HS) for _ in range(NH)]
    Wp = weights(rng, NH * HS, NH * HS, D)
    out = attn.multihead_cross_attention_list(xq, xv, Wqs, Wks, Wvs, Wp)
    assert out.shape == (B, Nq, D)
    close(out, np_multihead_cross_attention_list(xq, xv, Wqs, Wks, Wvs, Wp))


@pytest.mark.parametrize("D,N,HS", [(1, 1, 1), (4, 1, 3), (5, 7, 1), (13, 17, 6), (64, 33, 16)])
def test_self_attention_cols(rng, D, N, HS):
    x = randn(rng, D, N)
    Wk, Wq, Wv = (weights(rng, D, HS, D) for _ in range(3))
    Bk, Bq, Bv = (randn(rng, HS, 1) for _ in range(3))
    out = attn.self_attention_cols(x, Wk, Wq, Wv, Bk, Bq, Bv)
    assert out.shape == (HS, N) and out.dtype == np.float64
    close(out, np_self_attention_cols(x, Wk, Wq, Wv, Bk, Bq, Bv))
    # it is the row layout transposed
    from numpy_ref import mha
    ref = mha(x.T[None], None, Wq.T[None], Wk.T[None], Wv.T[None], Bq.T, Bk.T, Bv.T)[0].T
    close(out, ref)
    out32 = attn.self_attention_cols(*(a.astype(np.float32) for a in (x, Wk, Wq, Wv, Bk, Bq, Bv)))
    assert out32.dtype == np.float32
    close(out32, ref, rtol=2e-4, atol=5e-5)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 1), (4, 7), (2, 3, 64), (2, 2, 2, 9),
                                   (2, 1, 2, 3, 5)])
@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm(rng, shape, affine):
    x = randn(rng, *shape, scale=3.0) + 1.5
    D = shape[-1]
    g = randn(rng, D) if affine else None
    b = randn(rng, D) if affine else None
    y = attn.layer_norm(x, g, b, eps=1e-5)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5)
    if affine:
        ref = ref * g + b
    assert y.shape == x.shape
    close(y, ref, atol=5e-5)


def test_layer_norm_eps(rng):
    x = randn(rng, 3, 4, scale=1e-2)
    for eps in (0.0, 1e-5, 1e-1):
        mu = x.mean(-1, keepdims=True)
        ref = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
        close(attn.layer_norm(x, eps=eps), ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("xshape,out", [((1,), 1), ((5,), 3), ((4, 7), 1), ((1, 1), 1),
                                        ((3, 13, 31), 17), ((2, 3, 4, 6), 5)])
@pytest.mark.parametrize("bias", [False, True])
def test_linear(rng, xshape, out, bias):
    x = randn(rng, *xshape)
    W = weights(rng, xshape[-1], xshape[-1], out)
    b = randn(rng, out) if bias else None
    y = attn.linear(x, W, b)
    ref = np.einsum("...i,io->...o", x, W)
    if bias:
        ref = ref + b
    assert y.shape == xshape[:-1] + (out,)
    close(y, ref)
