"""attn.sdpa_backward against PyTorch autograd on a float64 composition
(matmul, softcap, ALiBi, mask, safe softmax with sinks, the exported dropout
keep pattern, matmul), for every option and both paths; GQA; threads; rows
with no visible key; NaN in hidden keys; strided and broadcast dout.

Tolerance: 2e-4 relative to the largest gradient (float32 computation with
inputs of size ~1; see tests/test_backward.c for the error budget)."""

import numpy as np
import pytest

import attn

ALGOS = ("reference", "flash")
M1, M2, GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(
    0x9E3779B97F4A7C15)


def mix(z):
    with np.errstate(over="ignore"):
        z = z + GOLD
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def keep_pattern(seed, B, H, Nq, Nkv, p):
    """attn.dropout_keep over the whole (B, H, Nq, Nkv) grid, vectorised from
    the header's definition (spot-checked against attn.dropout_keep)."""
    b = np.arange(B, dtype=np.uint64)[:, None, None, None]
    h = np.arange(H, dtype=np.uint64)[None, :, None, None]
    i = np.arange(Nq, dtype=np.uint64)[None, None, :, None]
    j = np.arange(Nkv, dtype=np.uint64)[None, None, None, :]
    x = mix(mix(mix(mix(np.uint64(seed) ^ b) ^ h) ^ i) ^ j)
    u = (x >> np.uint64(40)).astype(np.uint32)
    return u >= np.uint32(int(p * 16777216.0))


def torch_grads(torch, q, k, v, dout, scale=None, causal="none", mask=None, key_lengths=None,
                dropout_p=0.0, seed=0, window=None, softcap=None, alibi_slopes=None, sinks=None,
                q_offset=None, k_offset=None):
    """The forward written out in float64 torch ops; autograd's gradients."""
    B, H, Nq, d = q.shape
    Hkv, Nkv = k.shape[1], k.shape[2]
    G = H // Hkv
    t = lambda a: torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)
    tq, tk, tv = t(q), t(k), t(v)
    tm = t(np.broadcast_to(mask, mask.shape)) if mask is not None else None
    ts = t(sinks) if sinks is not None else None
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    kk = tk.repeat_interleave(G, dim=1)
    vv = tv.repeat_interleave(G, dim=1)
    s = scale * torch.einsum("bhie,bhje->bhij", tq, kk)
    # visibility and positions as design.md states them
    L = np.full(B, Nkv) if key_lengths is None else np.asarray(key_lengths)
    if q_offset is None:
        qpos = np.stack([np.arange(Nq) + (0 if causal == "top_left" else L[b] - Nq)
                         for b in range(B)])
    else:
        qpos = np.asarray(q_offset)[:, None] + np.arange(Nq)[None, :]
    dist = qpos[:, None, :, None] - ((k_offset or 0) + np.arange(Nkv))[None, None, None, :]
    vis = np.arange(Nkv)[None, None, None, :] < L[:, None, None, None]
    if causal != "none":
        vis = vis & (dist >= 0)
    if window is not None:
        left, right = window
        if left is not None and left >= 0:
            vis = vis & (dist <= left)
        if right is not None and right >= 0:
            vis = vis & (-dist <= right)
    vis = np.broadcast_to(vis, (B, H, Nq, Nkv))
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    if alibi_slopes is not None:
        s = s - torch.tensor(np.asarray(alibi_slopes, np.float64))[None, :, None, None] * \
            torch.tensor(np.abs(dist).astype(np.float64))
    if tm is not None:
        vis = vis & np.isfinite(np.broadcast_to(mask, (B, H, Nq, Nkv)))
        s = s + torch.where(torch.isfinite(tm), tm, torch.zeros_like(tm))
    vt = torch.tensor(vis)
    s = torch.where(vt, s, torch.full_like(s, -np.inf))
    # safe softmax: a row with nothing visible gives zeros; the sink in the denominator
    m = s.max(dim=-1, keepdim=True).values
    if ts is not None:
        m = torch.maximum(m, ts[None, :, None, None].expand_as(m))
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
    e = torch.where(vt, torch.exp(s - m), torch.zeros_like(s))
    den = e.sum(dim=-1, keepdim=True)
    if ts is not None:
        den = den + torch.exp(ts[None, :, None, None] - m)
    w = e / torch.where(den > 0, den, torch.ones_like(den))
    if dropout_p > 0:
        z = keep_pattern(seed, B, H, Nq, Nkv, dropout_p) / (1.0 - dropout_p)
        w = w * torch.tensor(z)
    out = torch.einsum("bhij,bhjf->bhif", w, vv)
    (out * torch.tensor(np.asarray(dout, np.float64))).sum().backward()
    g = dict(dq=tq.grad.numpy(), dk=tk.grad.numpy(), dv=tv.grad.numpy())
    if tm is not None:
        g["dmask"] = tm.grad.numpy()
    if ts is not None:
        g["dsinks"] = ts.grad.numpy()
    return g


def close(a, r, what):
    r = np.asarray(r, np.float64)
    lim = 2e-4 * (1.0 + np.abs(r).max())
    err = np.abs(np.asarray(a, np.float64) - r).max() if r.size else 0.0
    assert err <= lim, "%s differs by %g (limit %g)" % (what, err, lim)


def randn(rng, *shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


def test_keep_pattern_is_the_headers(rng):
    keep = keep_pattern(77, 2, 2, 5, 7, 0.3)
    for (b, h, i, j) in [(0, 0, 0, 0), (1, 1, 4, 6), (1, 0, 2, 3), (0, 1, 3, 5)]:
        assert keep[b, h, i, j] == attn.dropout_keep(77, b, h, i, j, 0.3)


CASES = [
    dict(),
    dict(causal="top_left"),
    dict(causal="bottom_right", key_lengths=[9, 4]),
    dict(mask="full"),
    dict(mask="row"),
    dict(dropout_p=0.2, seed=123),
    dict(scale=0.3, causal="top_left", dropout_p=0.1, seed=5, mask="keys"),
    dict(window=(3, 1)),
    dict(causal="bottom_right", window=(4, None), softcap=2.0),
    dict(alibi_slopes=[0.1, 0.2, 0.05, 0.3]),
    dict(sinks=[0.5, -1.0, 1.5, 0.0]),
    dict(sinks=[0.5, -1.0, 1.5, 0.0], softcap=1.5, mask="full", causal="top_left"),
    dict(q_offset=[3, -2], k_offset=1, causal="top_left", window=(5, None)),
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_against_torch_autograd(torch, rng, algo, case):
    opts = dict(CASES[case])
    B, H, Hkv, Nq, Nkv, d, dv = 2, 4, 2, 11, 9, 8, 6
    q, k, v = randn(rng, B, H, Nq, d), randn(rng, B, Hkv, Nkv, d), randn(rng, B, Hkv, Nkv, dv)
    shape = {"full": (B, H, Nq, Nkv), "row": (1, 1, Nq, Nkv), "keys": (B, 1, 1, Nkv)}
    if "mask" in opts:
        m = rng.uniform(-2, 2, shape[opts["mask"]])
        m[rng.random(m.shape) < 0.2] = -np.inf
        opts["mask"] = m.astype(np.float32)
    for key in ("alibi_slopes", "sinks"):
        if key in opts:
            opts[key] = np.asarray(opts[key], np.float32)
    out, lse = attn.sdpa(q, k, v, return_lse=True, **opts)
    dout = randn(rng, B, H, Nq, dv)
    want_dm, want_ds = "mask" in opts, "sinks" in opts
    g = attn.sdpa_backward(q, k, v, out, lse, dout, algo=algo, return_dmask=want_dm,
                           return_dsinks=want_ds, **opts)
    r = torch_grads(torch, q, k, v, dout, **opts)
    for name in g._fields:
        close(getattr(g, name), r[name], name)
    assert g.dq.dtype == np.float32 and g.dk.shape == k.shape and g.dv.shape == v.shape


def test_threads_bit_identical_and_gqa_expanded(rng):
    B, H, Hkv, N, d = 1, 6, 2, 150, 16
    q, k, v = randn(rng, B, H, N, d), randn(rng, B, Hkv, N, d), randn(rng, B, Hkv, N, d)
    out, lse = attn.sdpa(q, k, v, return_lse=True, causal="top_left")
    dout = randn(rng, B, H, N, d)
    gs = [attn.sdpa_backward(q, k, v, out, lse, dout, causal="top_left", num_threads=t)
          for t in (1, 2, 3)]
    for g in gs[1:]:
        for a, b in zip(g, gs[0]):
            assert np.array_equal(a, b)
    ke, ve = np.repeat(k, H // Hkv, axis=1), np.repeat(v, H // Hkv, axis=1)
    ge = attn.sdpa_backward(q, ke, ve, out, lse, dout, causal="top_left")
    close(gs[0].dq, ge.dq, "dq")
    close(gs[0].dk, ge.dk.reshape(B, Hkv, H // Hkv, N, d).sum(2), "dk")
    close(gs[0].dv, ge.dv.reshape(B, Hkv, H // Hkv, N, d).sum(2), "dv")


def test_hidden_nan_and_empty_rows(rng):
    B, H, Nq, Nkv, d = 2, 2, 20, 30, 8
    q, k, v = randn(rng, B, H, Nq, d), randn(rng, B, H, Nkv, d), randn(rng, B, H, Nkv, d)
    kl = [30, 10]
    out, lse = attn.sdpa(q, k, v, return_lse=True, key_lengths=kl, causal="bottom_right")
    dout = randn(rng, B, H, Nq, d)
    g = attn.sdpa_backward(q, k, v, out, lse, dout, key_lengths=kl, causal="bottom_right")
    assert np.all(g.dq[1, :, :10] == 0)  # rows i < Nq - L_b see nothing
    k2, v2 = k.copy(), v.copy()
    k2[1, :, 10:] = np.nan
    v2[1, :, 10:] = np.inf
    g2 = attn.sdpa_backward(q, k2, v2, out, lse, dout, key_lengths=kl, causal="bottom_right")
    assert np.array_equal(g2.dq, g.dq)
    assert np.array_equal(g2.dk[:, :, :10], g.dk[:, :, :10])
    assert np.all(g2.dk[1, :, 10:] == 0) and np.all(g2.dv[1, :, 10:] == 0)


def test_dout_strided_and_broadcast(rng):
    H, N, d = 3, 40, 16
    q, k, v = randn(rng, H, N, d), randn(rng, H, N, d), randn(rng, H, N, d)
    out, lse = attn.sdpa(q, k, v, return_lse=True)
    big = randn(rng, N, H, 2 * d)
    dout = big[:, :, ::2].transpose(1, 0, 2)  # strided view
    g = attn.sdpa_backward(q, k, v, out, lse, dout)
    gc = attn.sdpa_backward(q, k, v, out, lse, np.ascontiguousarray(dout))
    for a, b in zip(g, gc):
        assert np.array_equal(a, b)
    row = randn(rng, d)
    g0 = attn.sdpa_backward(q, k, v, out, lse, np.broadcast_to(row, out.shape))
    g1 = attn.sdpa_backward(q, k, v, out, lse, np.tile(row, (H, N, 1)))
    for a, b in zip(g0, g1):
        assert np.array_equal(a, b)


def test_errors(rng):
    q, k, v = randn(rng, 2, 5, 8), randn(rng, 2, 6, 8), randn(rng, 2, 6, 8)
    out, lse = attn.sdpa(q, k, v, return_lse=True)
    with pytest.raises(ValueError, match="lse"):
        attn.sdpa_backward(q, k, v, out, lse[:, :4], out)
    with pytest.raises(ValueError, match="mask"):
        attn.sdpa_backward(q, k, v, out, lse, out, return_dmask=True)
    with pytest.raises(ValueError, match="sinks"):
        attn.sdpa_backward(q, k, v, out, lse, out, return_dsinks=True)
    g = attn.sdpa_backward(q.astype(np.float64), k, v, out, lse, out)
    assert g.dq.dtype == np.float64
