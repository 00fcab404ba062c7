"""attn: transformer attention on the CPU for NumPy users.

Every function takes NumPy arrays and returns NumPy arrays; the work is done
by the attn C library (float32, SIMD, threads), with the GIL released.

The article's functions, same names and argument order (note k, q, v):

    softmax_lastdim(x)
    self_attention(x, Wk, Wq, Wv)                     x (N, D)    -> (N, HS)
    self_attention_batched(x, Wk, Wq, Wv)             x (B, N, D) -> (B, N, HS)
    multihead_attention_list(x, Wqs, Wks, Wvs, Wp, do_mask=False)
    multihead_attention_vec(x, W, NH, Wp, do_mask=False)
    multihead_cross_attention_list(xq, xv, Wqs, Wks, Wvs, Wp)
    softmax_cols(x)
    self_attention_cols(x, Wk, Wq, Wv, Bk, Bq, Bv)    x (D, N)    -> (HS, N)
    layer_norm(x, gamma=None, beta=None, eps=1e-5)
    linear(x, W, b=None)

The general API: sdpa(q, k, v, ...), merge(outs, lses) and the class
MultiHeadAttention (with from_torch_state / to_torch_state).

Dimension letters: B batch, H query heads, Hkv key/value heads, N tokens,
Nq query tokens, Nkv key/value tokens, D model width, d and HS head size,
dv value head size, NH number of heads.

Data types and layout (the documented conversion)
  * float32 and float64 arrays are accepted, mixed too. The computation is
    float32. The result's dtype is np.result_type of the data inputs: float64
    if any of them is float64 (so float64 code gets float64 back), else
    float32. Masks and key lengths do not affect the result dtype.
  * Arrays of any strides are read in place (transposed, sliced, negative or
    zero strides) when they are float32, aligned, in native byte order and
    their byte strides are multiples of 4. Anything else (float64 included)
    is first copied to a C-contiguous float32 array.
  * Integer, boolean, complex and float16 arrays raise TypeError. A boolean
    mask is refused: build the additive form with np.where(keep, 0, -np.inf).
  * Shape errors raise ValueError with the C library's message, e.g.
    "attn_sdpa: k.shape[3]=80 but q.shape[3]=64 (head size must match)".
  * num_threads=None (the default) uses every online CPU, whatever OpenMP's
    global setting (importing torch lowers that one).
"""

import numpy as np

from . import _attn

__all__ = [
    "softmax_lastdim",
    "self_attention",
    "self_attention_batched",
    "multihead_attention_list",
    "multihead_attention_vec",
    "multihead_cross_attention_list",
    "softmax_cols",
    "self_attention_cols",
    "layer_norm",
    "linear",
    "sdpa",
    "merge",
    "MultiHeadAttention",
    "dropout_keep",
    "build_info",
    "get_isa",
    "set_isa",
]

__version__ = _attn.version()

_CAUSAL = {"none": 0, "top_left": 1, "bottom_right": 2}
_ALGO = {"auto": 0, "reference": 1, "flash": 2}


def build_info():
    """One line: version, BLAS or not, OpenMP or not, instruction set in use."""
    return _attn.build_info()


def get_isa():
    """The instruction set the kernels use: "generic", "avx2" or "avx512"."""
    return _attn.get_isa()


def set_isa(name):
    """Select the kernels, process-wide: "auto", "generic", "avx2", "avx512".

    Raises RuntimeError if this CPU cannot run the set. Not to be called while
    other threads are inside attn."""
    _attn.set_isa(name)


def dropout_keep(seed, b, h, i, j, p):
    """True if dropout keeps weight (b, h, i, j) under seed and probability p.

    The same pure function the C library uses (see attn_dropout_keep in
    attn.h): a splitmix64 hash of (seed, b, h, i, j), h the query head."""
    return _attn.dropout_keep(int(seed), int(b), int(h), int(i), int(j), float(p))


def _causal(c):
    if c is None or c is False:
        return 0
    if isinstance(c, str) and c in _CAUSAL:
        return _CAUSAL[c]
    raise ValueError(
        "causal must be 'none', 'top_left' (j <= i, PyTorch's is_causal) or "
        "'bottom_right' (j <= i + Nkv - Nq, FlashAttention's); got %r" % (c,)
    )


def _algo(a):
    if a in _ALGO:
        return _ALGO[a]
    raise ValueError("algo must be 'auto', 'reference' or 'flash'; got %r" % (a,))


def _threads(n):
    if n is None:
        return 0
    n = int(n)
    if n < 0:
        raise ValueError("num_threads must be >= 0 (0 or None: all CPUs), got %d" % n)
    return n


def _float_dtype(*arrays):
    """np.result_type of the arrays, which must all be float32 or float64."""
    for a in arrays:
        if a.dtype != np.float32 and a.dtype != np.float64:
            raise TypeError(
                "array of dtype %s; attn takes float32 or float64 arrays "
                "(convert with .astype(np.float32))" % a.dtype
            )
    return np.result_type(*arrays)


def _stack_heads(Ws, name):
    """A list of per-head matrices (each (D, HS)) as one (NH, D, HS) array.
    An array that already has rank 3 is used as is (no copy)."""
    if isinstance(Ws, np.ndarray) and Ws.ndim == 3:
        return Ws
    Ws = [np.asarray(w) for w in Ws]
    if not Ws:
        raise ValueError("%s is empty: at least one head is needed" % name)
    for h, w in enumerate(Ws):
        if w.ndim != 2:
            raise ValueError("%s[%d] has shape %s; each head's matrix is (D, HS)"
                             % (name, h, w.shape))
    shapes = {w.shape for w in Ws}
    if len(shapes) != 1:
        raise ValueError("%s: heads have different shapes %s" % (name, sorted(shapes)))
    return np.stack(Ws)


def _stack_bias(bs, name):
    """Per-head biases, a list of (HS,) or an (NH, HS) array, or None."""
    if bs is None:
        return None
    if isinstance(bs, np.ndarray) and bs.ndim == 2:
        return bs
    bs = [np.asarray(b).reshape(-1) for b in bs]
    if not bs:
        raise ValueError("%s is empty" % name)
    return np.stack(bs)


# --------------------------------------------------------------------------
# The article's functions
# --------------------------------------------------------------------------


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
    return _attn.attention1(x, None, Wq, Wk, Wv)


def self_attention_batched(x, Wk, Wq, Wv):
    """Batched single-head self-attention (argument order k, q, v).

        x (B, N, D) or (N, D);  Wk, Wq (D, HS);  Wv (D, HSv)  ->  (B, N, HSv)
        q = x @ Wq;  k = x @ Wk;  v = x @ Wv          # einsum "bnd,de->bne"
        scores = q @ k.swapaxes(-2, -1) / sqrt(HS)    # einsum "bie,bje->bij"
        out = softmax_lastdim(scores) @ v             # einsum "bij,bjf->bif"
    """
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
    return _attn.mha(x, None, Wq, Wk, Wv, None, None, None, Wp, None, Wq.shape[0], False,
                     causal=1 if do_mask else 0)


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
    return _attn.mha(x, None, W, None, None, None, None, None, Wp, None, int(NH), True,
                     causal=1 if do_mask else 0)


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
    return _attn.mha(xq, xv, Wq, Wk, Wv, None, None, None, Wp, None, Wq.shape[0], False)


def _col_bias(B, name):
    B = np.asarray(B)
    if B.ndim == 2 and B.shape[1] == 1:
        return B.T  # (1, HS) view
    if B.ndim == 1:
        return B[None, :]
    raise ValueError("%s has shape %s; a bias of the column layout is (HS, 1)" % (name, B.shape))


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
    res = np.empty((Wv.shape[0], x.shape[1]), np.float32)
    _attn.mha(x.T, None, Wq.T[None], Wk.T[None], Wv.T[None], bq, bk, bv, None, None, 1, False,
              out=res.T)
    return res if dt == np.float32 else res.astype(dt)


def layer_norm(x, gamma=None, beta=None, eps=1e-5):
    """Layer normalisation over the last axis (biased variance, as PyTorch).

        x (..., D);  gamma, beta (D,) or None (1 and 0)  ->  same shape as x
        mu = x.mean(-1, keepdims=True);  var = ((x - mu)**2).mean(-1, keepdims=True)
        y = (x - mu) / np.sqrt(var + eps) * gamma + beta
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("layer_norm: x must have at least one dimension")
    if x.ndim <= 4:
        return _attn.layer_norm(x, gamma, beta, float(eps))
    y = _attn.layer_norm(x.reshape(-1, x.shape[-1]), gamma, beta, float(eps))
    return y.reshape(x.shape)


def linear(x, W, b=None, *, num_threads=None):
    """Linear layer in the article's layout: y = x @ W + b.

        x (..., in);  W (in, out);  b (out,) or None  ->  (..., out)
        y[n, o] = sum_i x[n, i] W[i, o] + b[o]        # einsum "ni,io->no"

    Ranks above 3 are reshaped to (-1, in). Uses BLAS sgemm when the library
    was built with it.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("linear: x must have at least one dimension")
    nt = _threads(num_threads)
    if x.ndim <= 3:
        return _attn.linear(x, W, b, nt)
    y = _attn.linear(x.reshape(-1, x.shape[-1]), W, b, nt)
    return y.reshape(x.shape[:-1] + (y.shape[-1],))


# --------------------------------------------------------------------------
# The general API
# --------------------------------------------------------------------------


def _to4(a):
    """Prepend size-1 axes up to rank 4 (views, no copy)."""
    a = np.asarray(a)
    if a.ndim < 2 or a.ndim > 4:
        raise ValueError("sdpa: q, k, v must have rank 2 to 4 ((B, H, N, d)), got shape %s"
                         % (a.shape,))
    return a.reshape((1,) * (4 - a.ndim) + a.shape) if a.ndim < 4 else a


def sdpa(q, k, v, *, scale=None, causal="none", mask=None, key_lengths=None, dropout_p=0.0,
         seed=0, return_lse=False, return_weights=False, num_threads=None, algo="auto"):
    """Scaled dot-product attention, grouped-query K/V, masks, dropout.

    Shapes (lower ranks get leading size-1 axes: (N, d) means B = H = 1):
        q (B, H, Nq, d);  k (B, Hkv, Nkv, d);  v (B, Hkv, Nkv, dv)
        -> out (B, H, Nq, dv)
    H must be a multiple of Hkv; query head h reads kv head g = h // (H // Hkv)
    (the same as np.repeat(k, H // Hkv, axis=1)).

        scores[b,h,i,j] = scale * sum_e q[b,h,i,e] k[b,g,j,e] + mask[b,h,i,j]
                                               # einsum "bhie,bhje->bhij" after repeat
        w[b,h,i,:] = softmax of scores[b,h,i,:] over the visible keys, 0 elsewhere
        out[b,h,i,f] = sum_j w[b,h,i,j] v[b,g,j,f]   # einsum "bhij,bhjf->bhif"

    Options
        scale: defaults to 1/sqrt(d).
        causal: "none"; "top_left" (key j visible to query i iff j <= i,
            PyTorch's is_causal); "bottom_right" (j <= i + L_b - Nq,
            FlashAttention's, for decoding with a cache). Equal when Nq == Nkv.
        mask: additive float mask broadcasting to (B, H, Nq, Nkv) like NumPy
            (aligned on the right; size-1 axes broadcast). -inf hides a key;
            finite values (even -1e9) are added and the key stays visible.
            Boolean masks raise TypeError: use np.where(keep, 0, -np.inf).
        key_lengths: B integers in 0..Nkv; batch b sees keys j < key_lengths[b]
            (PyTorch's key_padding_mask for right padding).
        dropout_p, seed: dropout on the attention weights, kept weights scaled
            by 1/(1-p); keep/drop is dropout_keep(seed, b, h, i, j, p).
        return_lse: also return lse (B, H, Nq) = log sum_visible exp(scores),
            -inf for a row with no visible key (for merge()).
        return_weights: also return w (B, H, Nq, Nkv), after dropout (runs the
            reference path).
        num_threads: None or 0 = every online CPU.
        algo: "auto", "reference" (the plain loops) or "flash".

    A row with no visible key gives zeros. Returns out, or a tuple
    (out, lse?, weights?) when return_lse or return_weights is set; lse and
    weights have the rank of q minus one and the rank of q.
    """
    q = np.asarray(q)
    q4, k4, v4 = _to4(q), _to4(k), _to4(v)
    if np.ndim(key_lengths) == 0 and key_lengths is not None:
        key_lengths = [key_lengths]
    out, lse, w = _attn.sdpa(q4, k4, v4, scale, _causal(causal), mask, key_lengths,
                             float(dropout_p), int(seed), bool(return_lse), bool(return_weights),
                             _threads(num_threads), _algo(algo))
    lead = q.shape[:-2]
    out = out.reshape(lead + out.shape[-2:])
    if not (return_lse or return_weights):
        return out
    res = [out]
    if return_lse:
        res.append(lse.reshape(lead + lse.shape[-1:]))
    if return_weights:
        res.append(w.reshape(lead + w.shape[-2:]))
    return tuple(res)


def merge(outs, lses):
    """Merge partial attention results computed over disjoint key sets.

        outs: list of P arrays (B, H, Nq, dv);  lses: list of P arrays (B, H, Nq)
        m = max_p lse_p;  w_p = exp(lse_p - m)
        out = sum_p w_p[..., None] * out_p / sum_p w_p[..., None]
        lse = m + log(sum_p w_p)
    Returns (out, lse). Where every lse_p is -inf: zeros and -inf. Exact when
    the partials were computed without dropout (sdpa(..., return_lse=True)
    over key slices).
    """
    return _attn.merge(list(outs), list(lses))


class MultiHeadAttention:
    """Multi-head attention holding its weights, self or cross use.

    Weights, in the article's layout (applied as x @ W):
      fused:    MultiHeadAttention(NH, Wqkv=W (D, 3*D), bqkv=(3*D,) or None,
                                   Wo=(D, Dout) or None, bo=(Dout,) or None)
      per head: MultiHeadAttention(Wq=..., Wk=..., Wv=..., bq=..., ...)
                with Wq a list of NH matrices (Dq, HS) or an array (NH, Dq, HS),
                Wk (NH, Dkv, HS), Wv (NH, Dkv, HSv), biases (NH, HS) or lists,
                Wo (NH*HSv, Dout), bo (Dout,).
    Without Wo the heads come back concatenated, (..., NH*HSv).

    Call: mha(x) for self-attention, mha(xq, xkv) for cross-attention.
        xq (B, Nq, Dq) or (Nq, Dq);  xkv (B, Nkv, Dkv) or (Nkv, Dkv)
        -> (B, Nq, Dout)
        q[b,h,i,e] = sum_c xq[b,i,c] Wq[h,c,e] + bq[h,e]   # "bic,hce->bhie"
        k[b,h,j,e] = sum_c xkv[b,j,c] Wk[h,c,e] + bk[h,e]  # "bjc,hce->bhje"
        v[b,h,j,f] = sum_c xkv[b,j,c] Wv[h,c,f] + bv[h,f]  # "bjc,hcf->bhjf"
        a = sdpa(q, k, v, causal, mask, key_lengths, ...)  # (B, NH, Nq, HSv)
        out = a.transpose(0, 2, 1, 3).reshape(B, Nq, NH*HSv) @ Wo + bo

    Keyword options of the constructor (defaults for calls) and of calls:
    causal ("none", "top_left", "bottom_right"), scale, dropout_p, num_threads;
    calls also take mask (additive, broadcasting to (B, NH, Nq, Nkv)),
    key_lengths (B,) and seed. See sdpa().
    """

    def __init__(self, num_heads=None, *, Wqkv=None, bqkv=None, Wq=None, Wk=None, Wv=None,
                 bq=None, bk=None, bv=None, Wo=None, bo=None, causal="none", scale=None,
                 dropout_p=0.0, num_threads=None):
        if Wqkv is not None:
            if num_heads is None:
                raise ValueError("MultiHeadAttention: the fused form needs num_heads")
            if any(w is not None for w in (Wq, Wk, Wv, bq, bk, bv)):
                raise ValueError("MultiHeadAttention: give either Wqkv (fused) or Wq, Wk, Wv")
            self.fused = True
            self.Wqkv = np.asarray(Wqkv)
            self.bqkv = None if bqkv is None else np.asarray(bqkv)
            self.Wq = self.Wk = self.Wv = self.bq = self.bk = self.bv = None
            self.num_heads = int(num_heads)
        else:
            if Wq is None or Wk is None or Wv is None:
                raise ValueError("MultiHeadAttention: give Wqkv, or all of Wq, Wk, Wv")
            if bqkv is not None:
                raise ValueError("MultiHeadAttention: bqkv goes with Wqkv; use bq, bk, bv")
            self.fused = False
            self.Wqkv = self.bqkv = None
            self.Wq = _stack_heads(Wq, "Wq")
            self.Wk = _stack_heads(Wk, "Wk")
            self.Wv = _stack_heads(Wv, "Wv")
            self.bq = _stack_bias(bq, "bq")
            self.bk = _stack_bias(bk, "bk")
            self.bv = _stack_bias(bv, "bv")
            nh = self.Wq.shape[0]
            if num_heads is not None and int(num_heads) != nh:
                raise ValueError("MultiHeadAttention: num_heads=%d but Wq holds %d heads"
                                 % (num_heads, nh))
            self.num_heads = nh
        self.Wo = None if Wo is None else np.asarray(Wo)
        self.bo = None if bo is None else np.asarray(bo)
        self.causal = causal
        _causal(causal)
        self.scale = scale
        self.dropout_p = float(dropout_p)
        self.num_threads = num_threads

    def __repr__(self):
        form = "fused Wqkv %s" % (self.Wqkv.shape,) if self.fused else \
            "per-head Wq %s" % (self.Wq.shape,)
        return "MultiHeadAttention(num_heads=%d, %s, Wo=%s, causal=%r)" % (
            self.num_heads, form, None if self.Wo is None else self.Wo.shape, self.causal)

    def __call__(self, xq, xkv=None, *, mask=None, key_lengths=None, causal=None, scale=None,
                 dropout_p=None, seed=0, num_threads=None, algo="auto"):
        """mha(x) (self) or mha(xq, xkv) (cross); see the class docstring."""
        xq = np.asarray(xq)
        if np.ndim(key_lengths) == 0 and key_lengths is not None:
            key_lengths = [key_lengths]
        opts = dict(
            scale=self.scale if scale is None else scale,
            causal=_causal(self.causal if causal is None else causal),
            mask=mask,
            key_lengths=key_lengths,
            dropout_p=float(self.dropout_p if dropout_p is None else dropout_p),
            seed=int(seed),
            num_threads=_threads(self.num_threads if num_threads is None else num_threads),
            algo=_algo(algo),
        )
        if self.fused:
            return _attn.mha(xq, xkv, self.Wqkv, None, None, self.bqkv, None, None, self.Wo,
                             self.bo, self.num_heads, True, **opts)
        return _attn.mha(xq, xkv, self.Wq, self.Wk, self.Wv, self.bq, self.bk, self.bv, self.Wo,
                         self.bo, self.num_heads, False, **opts)

    # ---- PyTorch's nn.MultiheadAttention layout ---------------------------

    @classmethod
    def from_torch_state(cls, state, num_heads, **kwargs):
        """Build from nn.MultiheadAttention's state_dict as NumPy arrays:

            state = {k: v.numpy() for k, v in m.state_dict().items()}
            mha = attn.MultiHeadAttention.from_torch_state(state, m.num_heads)

        PyTorch applies x @ W.T; attn applies x @ W, so every matrix is
        transposed (and copied once, contiguous):
            in_proj_weight (3D, D)  -> Wqkv (D, 3D)   (fused)
            q/k/v_proj_weight (D, Dq|Dk|Dv) (kdim/vdim != D) -> per-head Wq, Wk, Wv
            in_proj_bias (3D,)      -> bqkv or bq, bk, bv
            out_proj.weight (D, D)  -> Wo (D, D);  out_proj.bias -> bo
        add_bias_kv (bias_k, bias_v) is not supported. kwargs go to the
        constructor (causal, scale, dropout_p, num_threads).
        """
        st = {k: np.asarray(v) for k, v in state.items()}
        if "bias_k" in st or "bias_v" in st:
            raise ValueError("from_torch_state: add_bias_kv (bias_k, bias_v) is not supported")
        nh = int(num_heads)
        Wo = np.ascontiguousarray(st["out_proj.weight"].T)
        bo = st.get("out_proj.bias")
        bin_ = st.get("in_proj_bias")
        if "in_proj_weight" in st:
            Wqkv = np.ascontiguousarray(st["in_proj_weight"].T)
            return cls(nh, Wqkv=Wqkv, bqkv=bin_, Wo=Wo, bo=bo, **kwargs)
        Wqp, Wkp, Wvp = st["q_proj_weight"], st["k_proj_weight"], st["v_proj_weight"]
        D = Wqp.shape[0]
        if D % nh != 0:
            raise ValueError("from_torch_state: embed_dim %d is not a multiple of num_heads %d"
                             % (D, nh))
        HS = D // nh

        def heads(Wt):  # PyTorch (D, Din) -> (NH, Din, HS)
            return np.ascontiguousarray(Wt.T.reshape(Wt.shape[1], nh, HS).transpose(1, 0, 2))

        bq = bk = bv = None
        if bin_ is not None:
            bq, bk, bv = (b.reshape(nh, HS) for b in np.split(bin_, 3))
        return cls(nh, Wq=heads(Wqp), Wk=heads(Wkp), Wv=heads(Wvp), bq=bq, bk=bk, bv=bv, Wo=Wo,
                   bo=bo, **kwargs)

    def to_torch_state(self):
        """The weights as nn.MultiheadAttention's state_dict (NumPy arrays):

            m.load_state_dict({k: torch.from_numpy(v) for k, v in
                               mha.to_torch_state().items()})

        in_proj_weight (3E, E) when q, k and v all read width E = NH*HS, else
        q_proj_weight, k_proj_weight, v_proj_weight (E, Din). With any bias
        present, in_proj_bias and out_proj.bias are both given (missing ones
        zero, as PyTorch's bias=True has all of them); with none, neither
        (bias=False). Without Wo, out_proj.weight is the identity.
        """
        nh = self.num_heads
        if self.fused:
            E = self.Wqkv.shape[1] // 3
            st = {"in_proj_weight": np.ascontiguousarray(self.Wqkv.T)}
            bin_ = self.bqkv
        else:
            HS, HSv = self.Wq.shape[2], self.Wv.shape[2]
            E = nh * HS
            if self.Wk.shape[2] != HS or HSv != HS:
                raise ValueError("to_torch_state: PyTorch needs equal q, k, v head sizes")

            def flat(W):  # (NH, Din, HS) -> PyTorch (E, Din)
                return np.ascontiguousarray(W.transpose(1, 0, 2).reshape(W.shape[1], E).T)

            Ws = [flat(self.Wq), flat(self.Wk), flat(self.Wv)]
            if all(W.shape[1] == E for W in Ws):
                st = {"in_proj_weight": np.concatenate(Ws, axis=0)}
            else:
                st = {"q_proj_weight": Ws[0], "k_proj_weight": Ws[1], "v_proj_weight": Ws[2]}
            has_b = any(b is not None for b in (self.bq, self.bk, self.bv))
            bin_ = None
            if has_b:
                dt = np.result_type(*[b for b in (self.bq, self.bk, self.bv) if b is not None])
                bin_ = np.concatenate([np.zeros(E, dt) if b is None else b.reshape(E)
                                       for b in (self.bq, self.bk, self.bv)])
        if self.Wo is None:
            Wo_t = np.eye(E, dtype=np.float32)
        else:
            Wo_t = np.ascontiguousarray(self.Wo.T)
        st["out_proj.weight"] = Wo_t
        if bin_ is not None or self.bo is not None:
            dt = (bin_ if bin_ is not None else self.bo).dtype
            st["in_proj_bias"] = np.zeros(3 * E, dt) if bin_ is None else np.asarray(bin_)
            st["out_proj.bias"] = np.zeros(Wo_t.shape[0], dt) if self.bo is None else self.bo
        return st


def __getattr__(name):
    # attn.torch (the PyTorch drop-ins) is imported on first use, never by
    # `import attn`: importing torch takes seconds and torch is optional.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError("module 'attn' has no attribute %r" % (name,))
