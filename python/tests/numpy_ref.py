"""Independent NumPy references, float64, written from the formulas (and
their einsum forms) in design.md and attn.h, not from attn's code.

Tolerances: attn computes in float32. On well-scaled data (x ~ N(0, 1),
weights ~ N(0, 1/fan_in), so scores are O(1) and the softmax is not
saturated) results are O(1) and agree with the float64 reference within
RTOL = 1e-4 relative and ATOL = 2e-5 absolute; float32 rounding alone gives
about 1e-6 here, so the tests would catch any real error (a wrong scale,
head, mask or bias changes results by 1e-2 or more)."""

import numpy as np

RTOL = 1e-4
ATOL = 2e-5


def close(got, ref, rtol=RTOL, atol=ATOL):
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


def randn(rng, *shape, scale=1.0, dtype=np.float64):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def weights(rng, fan_in, *shape, dtype=np.float64):
    """Weights with variance 1/fan_in, so projections of N(0,1) data stay O(1)."""
    return randn(rng, *shape, scale=1.0 / np.sqrt(fan_in), dtype=dtype)


def softmax(x, axis=-1):
    """Stable softmax; a slice that is all -inf gives zeros."""
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def visible(B, Nq, Nkv, causal="none", key_lengths=None):
    """Boolean (B, 1, Nq, Nkv): key j visible to query i of batch b."""
    i = np.arange(Nq)[:, None]
    j = np.arange(Nkv)[None, :]
    vis = np.zeros((B, 1, Nq, Nkv), bool)
    for b in range(B):
        L = Nkv if key_lengths is None else int(key_lengths[b])
        ok = j < L
        if causal == "top_left":
            ok = ok & (j <= i)
        elif causal == "bottom_right":
            ok = ok & (j <= i + L - Nq)
        vis[b, 0] = ok
    return vis


def sdpa(q, k, v, scale=None, causal="none", mask=None, key_lengths=None):
    """Returns (out, lse, weights) in float64.
    q (B,H,Nq,d), k (B,Hkv,Nkv,d), v (B,Hkv,Nkv,dv)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, H, Nq, d = q.shape
    Hkv, Nkv = k.shape[1], k.shape[2]
    rep = H // Hkv
    k = np.repeat(k, rep, axis=1)  # query head h reads kv head h // rep
    v = np.repeat(v, rep, axis=1)
    if scale is None:
        scale = 1.0 / np.sqrt(d)
    s = np.einsum("bhie,bhje->bhij", q, k) * scale
    vis = np.broadcast_to(visible(B, Nq, Nkv, causal, key_lengths), s.shape)
    if mask is not None:
        m = np.asarray(mask, np.float64)
        m = np.broadcast_to(m.reshape((1,) * (4 - m.ndim) + m.shape), s.shape)
        vis = vis & ~np.isneginf(m)
        s = s + np.where(np.isneginf(m), 0.0, m)
    s = np.where(vis, s, -np.inf)
    w = softmax(s)
    out = np.einsum("bhij,bhjf->bhif", w, v)
    mx = np.max(s, axis=-1)
    fin = np.isfinite(mx)
    mx0 = np.where(fin, mx, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.where(fin, mx0 + np.log(np.exp(s - mx0[..., None]).sum(-1)), -np.inf)
    return out, lse, w


def mha(xq, xkv, Wq, Wk, Wv, bq=None, bk=None, bv=None, Wo=None, bo=None, causal="none",
        mask=None, key_lengths=None):
    """Multi-head attention from per-head stacked weights, einsum forms:
    Wq (NH, Dq, HS), Wk (NH, Dkv, HS), Wv (NH, Dkv, HSv); xq (B, Nq, Dq)."""
    xq = np.asarray(xq, np.float64)
    xkv = xq if xkv is None else np.asarray(xkv, np.float64)
    q = np.einsum("bic,hce->bhie", xq, Wq)
    k = np.einsum("bjc,hce->bhje", xkv, Wk)
    v = np.einsum("bjc,hcf->bhjf", xkv, Wv)
    if bq is not None:
        q = q + np.asarray(bq)[None, :, None, :]
    if bk is not None:
        k = k + np.asarray(bk)[None, :, None, :]
    if bv is not None:
        v = v + np.asarray(bv)[None, :, None, :]
    a, _, _ = sdpa(q, k, v, causal=causal, mask=mask, key_lengths=key_lengths)
    B, NH, Nq, HSv = a.shape
    cat = a.transpose(0, 2, 1, 3).reshape(B, Nq, NH * HSv)  # "bhif->bi(hf)"
    if Wo is None:
        return cat
    out = np.einsum("bio,od->bid", cat, Wo)
    if bo is not None:
        out = out + bo
    return out


def fused_to_heads(W, NH):
    """(D, 3D) fused [q | k | v] -> three (NH, D, HS) stacks."""
    D = W.shape[0]
    HS = D // NH
    parts = np.split(W, 3, axis=1)
    return [p.reshape(D, NH, HS).transpose(1, 0, 2) for p in parts]
