"""The article's functions, with its names and argument order (note k, q, v)."""

import numpy as np

from ._convert import (_attn, _check_proj, _check_rank, _col_bias, _float_dtype, _int,
                       _shape_error, _stack_heads)


def _check_single(fn, x, Wk, Wq, Wv):
    """Shapes of the single-head functions, in the article's terms."""
    x, Wk, Wq, Wv = (np.asarray(a) for a in (x, Wk, Wq, Wv))
    _check_rank(fn, x, "x", 2, 3, "(N, D) or (B, N, D)")
    for name, W in (("Wk", Wk), ("Wq", Wq), ("Wv", Wv)):
        _check_rank(fn, W, name, 2, 2, "a matrix (D, HS)")
        _check_proj(fn, x, "x", W, name, 0, "%s is (D, HS), applied as x @ %s" % (name, name))
    if Wk.shape[1] != Wq.shape[1]:
        _shape_error(fn, "Wk has shape %s and Wq %s: q and k need the same head size HS",
                     Wk.shape, Wq.shape)
    return x, Wk, Wq, Wv


def _check_heads(fn, x, xname, Wq, Wk, Wv, Wp, xkv=None):
    """Stacked per-head weights (NH, D, HS) against x and Wp (NH*HSv, Dout)."""
    xkv = x if xkv is None else xkv
    kvname = xname if xkv is x else "xv"
    _check_rank(fn, x, xname, 2, 3, "(N, D) or (B, N, D)")
    if xkv is not x and (xkv.ndim != x.ndim or (x.ndim == 3 and xkv.shape[0] != x.shape[0])):
        _shape_error(fn, "%s has shape %s but %s %s: both need the same batch", xname, x.shape,
                     kvname, xkv.shape)
    _check_proj(fn, x, xname, Wq, "Wqs", 1, "each head's Wq is (D, HS)")
    _check_proj(fn, xkv, kvname, Wk, "Wks", 1, "each head's Wk is (D, HS)")
    _check_proj(fn, xkv, kvname, Wv, "Wvs", 1, "each head's Wv is (D, HSv)")
    nh, hsv = Wv.shape[0], Wv.shape[2]
    Wp = np.asarray(Wp)
    _check_rank(fn, Wp, "Wp", 2, 2, "a matrix (NH*HS, Dout)")
    if Wp.shape[0] != nh * hsv:
        _shape_error(fn, "Wp has shape %s: axis 0 must be NH*HS = %d*%d = %d (the heads "
                     "concatenated)", Wp.shape, nh, hsv, nh * hsv)


def softmax_lastdim(x):
    """Softmax over the last axis of an array of any rank, numerically stable.

        y[..., j] = exp(x[..., j] - m) / sum_k exp(x[..., k] - m),
        m = max_k x[..., k]

    x: (..., n) -> same shape; every row sums to 1. A row of all -inf gives
    zeros (not NaN). Ranks above 4 are reshaped to (-1, n) (a copy if x is
    not contiguous). Result dtype: x's (float32 or float64).
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("softmax_lastdim: x must have at least one dimension")
    if x.ndim <= 4:
        return _attn.softmax(x)
    return _attn.softmax(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def softmax_cols(x):
    """Softmax over axis 0 (down each column), the article's column layout.

        y[i, ...] = exp(x[i, ...] - m) / sum_k exp(x[k, ...] - m),
        m = max_k x[k, ...]

    x: (n, ...) -> same shape; every column sums to 1. Computed by the C
    softmax through a transposed view of x and of the (contiguous) result.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("softmax_cols: x must have at least one dimension")
    if x.ndim == 1:
        return softmax_lastdim(x)
    dt = _float_dtype(x)
    if x.ndim > 4:
        y = softmax_lastdim(np.moveaxis(x, 0, -1))
        return np.ascontiguousarray(np.moveaxis(y, -1, 0))
    res = np.empty(x.shape, np.float32)
    _attn.softmax(np.moveaxis(x, 0, -1), out=np.moveaxis(res, 0, -1))
    return res if dt == np.float32 else res.astype(dt)


def self_attention(x, Wk, Wq, Wv):
    """Single-head self-attention (note the argument order k, q, v).

        x (N, D);  Wk, Wq (D, HS);  Wv (D, HSv)  ->  (N, HSv)
        q = x @ Wq;  k = x @ Wk;  v = x @ Wv          # einsum "nd,de->ne"
        scores = q @ k.T / sqrt(HS)                   # einsum "ie,je->ij"
        att = softmax_lastdim(scores)                 # rows sum to 1
        out = att @ v                                 # einsum "ij,jf->if"

    Also accepts x (B, N, D) (then returns (B, N, HSv)).
    """
    x, Wk, Wq, Wv = _check_single("self_attention", x, Wk, Wq, Wv)
    return _attn.attention1(x, None, Wq, Wk, Wv)


def self_attention_batched(x, Wk, Wq, Wv):
    """Batched single-head self-attention (argument order k, q, v).

        x (B, N, D) or (N, D);  Wk, Wq (D, HS);  Wv (D, HSv)  ->  (B, N, HSv)
        q = x @ Wq;  k = x @ Wk;  v = x @ Wv          # einsum "bnd,de->bne"
        scores = q @ k.swapaxes(-2, -1) / sqrt(HS)    # einsum "bie,bje->bij"
        out = softmax_lastdim(scores) @ v             # einsum "bij,bjf->bif"
    """
    x, Wk, Wq, Wv = _check_single("self_attention_batched", x, Wk, Wq, Wv)
    return _attn.attention1(x, None, Wq, Wk, Wv)


def multihead_attention_list(x, Wqs, Wks, Wvs, Wp, do_mask=False):
    """Multi-head self-attention with per-head weight lists.

        x (B, N, D) or (N, D)
        Wqs, Wks, Wvs: lists of NH matrices (D, HS) (or arrays (NH, D, HS))
        Wp (NH*HS, Dout): the output projection
        -> (B, N, Dout)

        q[b,h,i,e] = sum_c x[b,i,c] Wq[h,c,e]       # einsum "bic,hce->bhie"
        scores[b,h,i,j] = q[b,h,i,:] . k[b,h,j,:] / sqrt(HS)
                                                    # einsum "bhie,bhje->bhij"
        out_h = softmax_lastdim(scores) @ v         # einsum "bhij,bhjf->bhif"
        cat = concatenate(out_h over h, axis=-1)    # (B, N, NH*HS)
        result = cat @ Wp                           # einsum "bio,od->bid"

    do_mask=True makes it causal: token i sees tokens j <= i only (the lower
    triangle, scores above the diagonal set to -inf).
    """
    Wq = _stack_heads(Wqs, "Wqs")
    Wk = _stack_heads(Wks, "Wks")
    Wv = _stack_heads(Wvs, "Wvs")
    x = np.asarray(x)
    _check_heads("multihead_attention_list", x, "x", Wq, Wk, Wv, Wp)
    return _attn.mha(x, None, Wq, Wk, Wv, Wo=Wp,
                     causal="top_left" if do_mask else "none")


def multihead_attention_vec(x, W, NH, Wp, do_mask=False):
    """Vectorized multi-head self-attention with the fused weight matrix.

        x (B, N, D) or (N, D);  W (D, 3*D);  NH heads, HS = D // NH;
        Wp (D, Dout)  ->  (B, N, Dout)

        qkv = x @ W                                   # (B, N, 3*D)
        q, k, v = np.split(qkv, 3, axis=-1)           # columns [q | k | v]
        q = q.reshape(B, N, NH, HS).transpose(0, 2, 1, 3)   # (B, NH, N, HS)
        scores = q @ k.swapaxes(-1, -2) / sqrt(HS)    # einsum "bhie,bhje->bhij"
        out = softmax_lastdim(scores) @ v             # einsum "bhij,bhjf->bhif"
        out = out.transpose(0, 2, 1, 3).reshape(B, N, D) @ Wp

    Head h owns columns h*HS .. h*HS+HS-1 of each of the q, k, v parts of W
    (PyTorch's in_proj_weight transposed). do_mask=True makes it causal.
    """
    fn = "multihead_attention_vec"
    NH = _int(NH, "NH", fn, lo=1)
    x, W, Wp = np.asarray(x), np.asarray(W), np.asarray(Wp)
    _check_rank(fn, x, "x", 2, 3, "(N, D) or (B, N, D)")
    _check_rank(fn, W, "W", 2, 2, "a matrix (D, 3*D)")
    D = x.shape[-1]
    if W.shape != (D, 3 * D):
        _shape_error(fn, "W has shape %s but must be (D, 3*D) = (%d, %d), D = x.shape[%d]",
                     W.shape, D, 3 * D, x.ndim - 1)
    if D % NH != 0:
        _shape_error(fn, "NH=%d heads do not divide the width D=%d (HS = D // NH)", NH, D)
    _check_rank(fn, Wp, "Wp", 2, 2, "a matrix (D, Dout)")
    if Wp.shape[0] != D:
        _shape_error(fn, "Wp has shape %s: axis 0 must be D=%d", Wp.shape, D)
    return _attn.mha_fused(x, None, W, None, NH, Wp,
                           causal="top_left" if do_mask else "none")


def multihead_cross_attention_list(xq, xv, Wqs, Wks, Wvs, Wp):
    """Multi-head cross-attention: queries from xq, keys and values from xv.

        xq (B, Nq, D) or (Nq, D);  xv (B, Nkv, Dkv) or (Nkv, Dkv)
        Wqs: NH matrices (D, HS), applied to xq;
        Wks, Wvs: NH matrices (Dkv, HS), applied to xv;  Wp (NH*HS, Dout)
        -> (B, Nq, Dout)

        q = xq @ Wq;  k = xv @ Wk;  v = xv @ Wv       # per head
        scores = q @ k.swapaxes(-2, -1) / sqrt(HS)    # einsum "bie,bje->bij", (B, Nq, Nkv)
        out_h = softmax_lastdim(scores) @ v           # einsum "bij,bjf->bif"
        result = concatenate(out_h, axis=-1) @ Wp
    """
    Wq = _stack_heads(Wqs, "Wqs")
    Wk = _stack_heads(Wks, "Wks")
    Wv = _stack_heads(Wvs, "Wvs")
    xq, xv = np.asarray(xq), np.asarray(xv)
    _check_rank("multihead_cross_attention_list", xv, "xv", 2, 3, "(Nkv, Dkv) or (B, Nkv, Dkv)")
    _check_heads("multihead_cross_attention_list", xq, "xq", Wq, Wk, Wv, Wp, xv)
    return _attn.mha(xq, xv, Wq, Wk, Wv, Wo=Wp)


def self_attention_cols(x, Wk, Wq, Wv, Bk, Bq, Bv):
    """Self-attention in the column layout (tokens are columns).

        x (D, N);  Wk, Wq (HS, D);  Wv (HSv, D);  Bk, Bq (HS, 1);  Bv (HSv, 1)
        -> (HSv, N)

        q = Wq @ x + Bq;  k = Wk @ x + Bk;  v = Wv @ x + Bv   # einsum "ed,dn->en"
        scores = k.T @ q / sqrt(HS)          # (N, N), scores[j, i] = k_j . q_i
        att = softmax_cols(scores)           # each column sums to 1
        out = v @ att                        # einsum "fj,ji->fi"

    Computed by the row-layout C module through transposed views (x.T, W.T,
    B.T and a transposed view of the result): no copy of x or the weights.
    """
    x = np.asarray(x)
    Wk, Wq, Wv = np.asarray(Wk), np.asarray(Wq), np.asarray(Wv)
    bk, bq, bv = _col_bias(Bk, "Bk"), _col_bias(Bq, "Bq"), _col_bias(Bv, "Bv")
    dt = _float_dtype(x, Wk, Wq, Wv, bk, bq, bv)
    if x.ndim != 2 or Wk.ndim != 2 or Wq.ndim != 2 or Wv.ndim != 2:
        raise ValueError(
            "self_attention_cols: x must be (D, N) and Wk, Wq, Wv (HS, D); got shapes "
            "%s, %s, %s, %s" % (x.shape, Wk.shape, Wq.shape, Wv.shape)
        )
    fn = "self_attention_cols"
    for name, W, B, Bn in (("Wk", Wk, bk, "Bk"), ("Wq", Wq, bq, "Bq"), ("Wv", Wv, bv, "Bv")):
        if W.shape[1] != x.shape[0]:
            _shape_error(fn, "%s has shape %s: axis 1 must be x's height D=%d (x.shape[0]; "
                         "%s is (HS, D), applied as %s @ x)", name, W.shape, x.shape[0], name,
                         name)
        if B.shape[1] != W.shape[0]:
            _shape_error(fn, "%s has %d rows but %s has %d: one bias per row (HS, 1)", Bn,
                         B.shape[1], name, W.shape[0])
    if Wk.shape[0] != Wq.shape[0]:
        _shape_error(fn, "Wk has shape %s and Wq %s: q and k need the same head size HS",
                     Wk.shape, Wq.shape)
    res = np.empty((Wv.shape[0], x.shape[1]), np.float32)
    _attn.mha(x.T, None, Wq.T[None], Wk.T[None], Wv.T[None], bq, bk, bv, out=res.T)
    return res if dt == np.float32 else res.astype(dt)


