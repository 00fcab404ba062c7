"""Gradients of the building blocks and of MultiHeadAttention (training).

Each function takes the forward's inputs and dy = dLoss/dy and returns every
gradient; what the backward needs from the forward is recomputed (nothing is
kept between the calls). See attn.h "Gradients of the building blocks and
modules" for the formulas."""

from collections import namedtuple

import numpy as np

from ._convert import _algo, _attn, _causal, _modifiers, _threads

LinearGrads = namedtuple("LinearGrads", "dx dW db")
LayerNormGrads = namedtuple("LayerNormGrads", "dx dgamma dbeta")
RMSNormGrads = namedtuple("RMSNormGrads", "dx dgamma")


def linear_backward(x, W, dy, *, num_threads=None):
    """Gradients of linear(x, W, b): y = x @ W + b.
        dx = dy @ W.T                          # "no,io->ni"
        dW = einsum("...i,...o->io", x, dy)    # summed over every leading axis
        db = dy.sum over every leading axis
    Returns LinearGrads(dx, dW, db)."""
    return LinearGrads(*_attn.linear_backward(x, W, dy, _threads(num_threads)))


def layer_norm_backward(x, dy, gamma=None, eps=1e-5):
    """Gradients of layer_norm(x, gamma, beta, eps) over the last axis:
        xh = (x - mean) / sqrt(var + eps);  dxh = dy * gamma
        dx = (dxh - mean(dxh) - xh * mean(dxh * xh)) / sqrt(var + eps)
        dgamma = sum of dy * xh, dbeta = sum of dy (over every leading axis)
    Returns LayerNormGrads(dx, dgamma, dbeta)."""
    return LayerNormGrads(*_attn.norm_backward(x, gamma, dy, eps, False))


def rms_norm_backward(x, dy, gamma=None, eps=1e-6):
    """Gradients of the RMS norm y = x / sqrt(mean(x^2) + eps) * gamma:
        r = 1 / sqrt(mean(x^2) + eps);  xh = x r;  dxh = dy * gamma
        dx = r (dxh - xh * mean(dxh * xh));  dgamma = sum of dy * xh
    Returns RMSNormGrads(dx, dgamma)."""
    dx, dgamma, _ = _attn.norm_backward(x, gamma, dy, eps, True)
    return RMSNormGrads(dx, dgamma)


def _heads_of_fused(W, NH, D):
    """Stacked (NH, D, HS) views of the q, k, v parts of Wqkv (D, 3*D)."""
    HS = D // NH
    return [W[:, i * D:(i + 1) * D].reshape(W.shape[0], NH, HS).transpose(1, 0, 2)
            for i in range(3)]


def mha_backward(mha, dout, xq, xkv=None, *, mask=None, key_lengths=None, causal=None,
                 scale=None, dropout_p=None, seed=0, num_threads=None, algo="auto", window=None,
                 softcap=None, alibi_slopes=None, sinks=None, q_offset=None, k_offset=None):
    """Gradients of out = mha(xq, xkv, **options) (a MultiHeadAttention) given
    dout = dLoss/dout, with the options of the forward call (the module's
    defaults where not given; the same seed regenerates dropout's pattern).

    Returns a dict: "x" (self-attention) or "xq" and "xkv", and one entry per
    parameter the module holds, in its own layout: "Wqkv", "bqkv" (fused) or
    "Wq", "Wk", "Wv", "bq", "bk", "bv" (per head, stacked), "Wo", "bo".
        dWo = cat^T dout;  dcat = dout Wo^T;  dq, dk, dv = sdpa_backward(...)
        dWq[h] = xq^T dq_h;  dxq = sum_h dq_h Wq[h]^T   (k, v likewise)
    """
    xq = np.asarray(xq)
    self_attn = xkv is None
    xkv_ = xq if self_attn else np.asarray(xkv)
    if np.ndim(key_lengths) == 0 and key_lengths is not None:
        key_lengths = [key_lengths]
    fn = "mha_backward"
    pick = lambda a, b: b if a is None else a  # noqa: E731
    B = xq.shape[0] if xq.ndim == 3 else 1
    opts = dict(scale=pick(scale, mha.scale),
                causal=_causal(pick(causal, mha.causal), xq.shape[-2], xkv_.shape[-2],
                               key_lengths, fn),
                mask=mask, key_lengths=key_lengths, dropout_p=pick(dropout_p, mha.dropout_p),
                seed=seed, num_threads=_threads(pick(num_threads, mha.num_threads)),
                algo=_algo(algo))
    opts.update(_modifiers(fn, B, pick(window, mha.window), pick(softcap, mha.softcap),
                           pick(alibi_slopes, mha.alibi_slopes), pick(sinks, mha.sinks),
                           q_offset, k_offset))
    if mha.fused:
        D = mha.Wqkv.shape[0]
        Wq, Wk, Wv = _heads_of_fused(mha.Wqkv, mha.num_heads, D)
        if mha.bqkv is None:
            bq = bk = bv = None
        else:
            bq, bk, bv = (mha.bqkv[i * D:(i + 1) * D].reshape(mha.num_heads, -1)
                          for i in range(3))
    else:
        Wq, Wk, Wv, bq, bk, bv = mha.Wq, mha.Wk, mha.Wv, mha.bq, mha.bk, mha.bv
    r = _attn.mha_backward(xq, xkv, Wq, Wk, Wv, bq, bk, bv, mha.Wo, mha.bo, dout, **opts)
    dxq, dxkv, dWq, dWk, dWv, dbq, dbk, dbv, dWo, dbo = r
    g = {"x": dxq} if self_attn else {"xq": dxq, "xkv": dxkv}
    if mha.fused:
        g["Wqkv"] = np.concatenate([w.transpose(1, 0, 2).reshape(D, -1) for w in (dWq, dWk, dWv)],
                                   axis=1)
        if mha.bqkv is not None:
            g["bqkv"] = np.concatenate([b.reshape(-1) for b in (dbq, dbk, dbv)])
    else:
        g.update(Wq=dWq, Wk=dWk, Wv=dWv)
        for name, val in (("bq", dbq), ("bk", dbk), ("bv", dbv)):
            if val is not None:
                g[name] = val
    if dWo is not None:
        g["Wo"] = dWo
    if dbo is not None:
        g["bo"] = dbo
    return g
