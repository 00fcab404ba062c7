"""Module gradients (linear, layer norm, RMS norm, MultiHeadAttention in
every form) against PyTorch autograd in float64."""

import numpy as np
import pytest

import attn


def close(a, r, what, tol=2e-4):
    r = np.asarray(r, np.float64)
    err = np.abs(np.asarray(a, np.float64) - r).max()
    assert err <= tol * (1 + np.abs(r).max()), "%s differs by %g" % (what, err)


def f32(rng, *shape, s=1.0):
    return (s * rng.uniform(-1, 1, shape)).astype(np.float32)


def T(torch, a):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=True)


def test_linear(torch, rng):
    x, W, b, dy = f32(rng, 2, 7, 5), f32(rng, 5, 3), f32(rng, 3), f32(rng, 2, 7, 3)
    tx, tW, tb = T(torch, x), T(torch, W), T(torch, b)
    ((tx @ tW + tb) * torch.tensor(dy.astype(np.float64))).sum().backward()
    g = attn.linear_backward(x[:, ::1, :], W, dy)
    for a, r, n in zip(g, (tx.grad, tW.grad, tb.grad), ("dx", "dW", "db")):
        close(a, r.numpy(), n)
    # strided x (a transposed view) gives the same
    xt = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    for a, b2 in zip(attn.linear_backward(xt, W, dy), g):
        assert np.array_equal(a, b2)


@pytest.mark.parametrize("rms", [False, True])
def test_norms(torch, rng, rms):
    x, gamma, dy = f32(rng, 3, 4, 10, s=2), f32(rng, 10), f32(rng, 3, 4, 10)
    tx, tg = T(torch, x), T(torch, gamma)
    if rms:
        y = tx / torch.sqrt((tx * tx).mean(-1, keepdim=True) + 1e-6) * tg
        g = attn.rms_norm_backward(x, dy, gamma, eps=1e-6)
    else:
        y = torch.nn.functional.layer_norm(tx, (10,), tg, None, 1e-5)
        g = attn.layer_norm_backward(x, dy, gamma, eps=1e-5)
    (y * torch.tensor(dy.astype(np.float64))).sum().backward()
    close(g.dx, tx.grad.numpy(), "dx")
    close(g.dgamma, tg.grad.numpy(), "dgamma")
    if not rms:
        close(g.dbeta, dy.sum((0, 1)), "dbeta")


def torch_mha(torch, x, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, causal):
    """The module written out: per-head stacks (H, D, HS), GQA by repeat."""
    H, Hkv = Wq.shape[0], Wk.shape[0]
    q = torch.einsum("bic,hce->bhie", x, Wq) + bq[None, :, None, :]
    k = torch.einsum("bjc,gce->bgje", xkv, Wk) + bk[None, :, None, :]
    v = torch.einsum("bjc,gcf->bgjf", xkv, Wv) + bv[None, :, None, :]
    k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
    s = q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), -np.inf)
    a = torch.softmax(s, -1) @ v
    cat = a.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
    return cat @ Wo + bo


@pytest.mark.parametrize("form", ["self", "cross", "gqa"])
def test_mha_per_head(torch, rng, form):
    B, N, Nkv, D, H, HS = 2, 9, 11 if form == "cross" else 9, 12, 4, 3
    Hkv = 2 if form == "gqa" else H
    x = f32(rng, B, N, D)
    xkv = f32(rng, B, Nkv, D) if form == "cross" else x
    P = dict(Wq=f32(rng, H, D, HS), Wk=f32(rng, Hkv, D, HS), Wv=f32(rng, Hkv, D, HS),
             bq=f32(rng, H, HS), bk=f32(rng, Hkv, HS), bv=f32(rng, Hkv, HS),
             Wo=f32(rng, H * HS, D), bo=f32(rng, D))
    causal = "top_left" if form != "cross" else "none"
    m = attn.MultiHeadAttention(causal=causal, **P)
    dout = f32(rng, B, N, D)
    if form == "gqa":  # the module class has no num_kv_heads here: check the C call directly
        r = attn._attn.mha_backward(x, None, P["Wq"], P["Wk"], P["Wv"], P["bq"], P["bk"],
                                    P["bv"], P["Wo"], P["bo"], dout, causal=causal)
        g = dict(zip(["x", "xkv", "Wq", "Wk", "Wv", "bq", "bk", "bv", "Wo", "bo"], r))
        del g["xkv"]
    else:
        g = attn.mha_backward(m, dout, x, None if form == "self" else xkv)
    tx = T(torch, x)
    txkv = tx if form != "cross" else T(torch, xkv)
    tP = {k: T(torch, v) for k, v in P.items()}
    out = torch_mha(torch, tx, txkv, *(tP[k] for k in ("Wq", "Wk", "Wv", "bq", "bk", "bv",
                                                         "Wo", "bo")), causal != "none")
    (out * torch.tensor(dout.astype(np.float64))).sum().backward()
    if form == "cross":
        close(g["xq"], tx.grad.numpy(), "dxq")
        close(g["xkv"], txkv.grad.numpy(), "dxkv")
    else:
        close(g["x"], tx.grad.numpy(), "dx")
    for k in P:
        close(g[k], tP[k].grad.numpy(), k)


def test_mha_fused_and_dropout(torch, rng):
    B, N, D, H = 2, 10, 8, 2
    W, b, Wo, bo = f32(rng, D, 3 * D), f32(rng, 3 * D), f32(rng, D, D), f32(rng, D)
    m = attn.MultiHeadAttention(H, Wqkv=W, bqkv=b, Wo=Wo, bo=bo, causal="top_left")
    x, dout = f32(rng, B, N, D), f32(rng, B, N, D)
    g = attn.mha_backward(m, dout, x)
    tx, tW, tb, tWo, tbo = (T(torch, a) for a in (x, W, b, Wo, bo))
    HS = D // H
    heads = lambda i: tW[:, i * D:(i + 1) * D].reshape(D, H, HS).permute(1, 0, 2)  # noqa: E731
    bias = lambda i: tb[i * D:(i + 1) * D].reshape(H, HS)  # noqa: E731
    out = torch_mha(torch, tx, tx, heads(0), heads(1), heads(2), bias(0), bias(1), bias(2), tWo,
                    tbo, True)
    (out * torch.tensor(dout.astype(np.float64))).sum().backward()
    close(g["x"], tx.grad.numpy(), "dx")
    close(g["Wqkv"], tW.grad.numpy(), "dWqkv")
    close(g["bqkv"], tb.grad.numpy(), "dbqkv")
    close(g["Wo"], tWo.grad.numpy(), "dWo")
    close(g["bo"], tbo.grad.numpy(), "dbo")
    # dropout: the module's gradient equals the one composed from sdpa_backward
    # and the projections, both regenerating the same keep pattern
    g1 = attn.mha_backward(m, dout, x, dropout_p=0.3, seed=11)
    g2 = attn.mha_backward(m, dout, x, dropout_p=0.3, seed=11)
    g3 = attn.mha_backward(m, dout, x, dropout_p=0.3, seed=12)
    assert np.array_equal(g1["x"], g2["x"]) and not np.array_equal(g1["x"], g3["x"])
    assert not np.allclose(g1["x"], g["x"])
