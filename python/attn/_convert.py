"""Shared helpers of the attn package: argument spellings, dtype checks and
the stacking of per-head weights. The C side of the conversion (arrays to
views, the GIL, errors) is python/ext/convert.h; what it documents for users
is in the package docstring (attn/__init__.py)."""

import numpy as np

from . import _attn  # noqa: F401  (re-exported for the concern modules)


import operator

_CAUSAL = ("none", "top_left", "bottom_right")
_ALGO = ("auto", "reference", "flash")


def _causal(c, nq=None, nkv=None, key_lengths=None, fn="sdpa"):
    """The C binding's spelling of a causal option.

    One rule for both front ends (the CLI's bare --causal is the same):
    "none", "top_left" (j <= i, PyTorch's is_causal) and "bottom_right"
    (j <= i + Nkv - Nq, FlashAttention's), also spelt "top-left" and
    "bottom-right"; None and False mean "none". True means "the lower
    triangle", which both rules are only when Nq == Nkv and no key_lengths
    are given: there it is accepted, anywhere else it is a ValueError asking
    for one of the two. (nq None: not known yet, checked at the call.)"""
    if c is None or c is False:
        return "none"
    if c is True:
        if nq is None:
            return True
        if nq == nkv and key_lengths is None:
            return "top_left"
        raise ValueError(
            "%s: causal=True is ambiguous here (%s): pass causal='top_left' (key j visible to "
            "query i iff j <= i, PyTorch's is_causal) or causal='bottom_right' (j <= i + Nkv - "
            "Nq, FlashAttention's, for decoding with a cache)"
            % (fn, "Nq=%d != Nkv=%d" % (nq, nkv) if nq != nkv else
               "key_lengths make each batch's Nkv differ"))
    if isinstance(c, str):
        canon = c.replace("-", "_")
        if canon in _CAUSAL:
            return canon
    raise ValueError(
        "%s: causal must be 'none', 'top_left' (j <= i, PyTorch's is_causal), "
        "'bottom_right' (j <= i + Nkv - Nq, FlashAttention's) or True (where Nq == Nkv); "
        "got %r" % (fn, c)
    )


def _int(x, name, fn, lo=None):
    """An integer argument: Python or NumPy integers only (1.5, "2" and True
    are refused, never truncated)."""
    if isinstance(x, (bool, np.bool_)):
        raise TypeError("%s: %s must be an integer, got %r" % (fn, name, x))
    try:
        i = operator.index(x)
    except TypeError:
        raise TypeError("%s: %s must be an integer, got %r" % (fn, name, x)) from None
    if lo is not None and i < lo:
        raise ValueError("%s: %s=%r must be an integer >= %d" % (fn, name, x, lo))
    return i


def _window(window, fn):
    """window=(left, right) as the binding's window_left/window_right.
    None (or a side None or -1): unbounded."""
    if window is None:
        return {}
    try:
        left, right = window
    except (TypeError, ValueError):
        raise TypeError("%s: window must be (left, right), each None, -1 (unbounded) or an "
                        "integer >= 0; got %r" % (fn, window)) from None
    out = {}
    for side, val in (("left", left), ("right", right)):
        if val is None:
            val = -1
        val = _int(val, "window's %s side" % side, fn)
        if val < -1:
            raise ValueError("%s: window=%r: the %s side must be None, -1 (unbounded) or an "
                             "integer >= 0" % (fn, window, side))
        out["window_" + side] = val
    return out


def _modifiers(fn, batch, window=None, softcap=None, alibi_slopes=None, sinks=None,
               q_offset=None, k_offset=None):
    """The score modifiers as keyword arguments of the binding (design.md
    "Score modifiers"): positions q_offset (one per batch entry, or one
    integer for all) and k_offset, window, softcap, ALiBi slopes and sinks."""
    kw = _window(window, fn)
    if softcap is not None:
        kw["softcap"] = softcap
    if alibi_slopes is not None:
        kw["alibi_slopes"] = alibi_slopes
    if sinks is not None:
        kw["sinks"] = sinks
    if k_offset is not None:
        kw["k_offset"] = _int(k_offset, "k_offset", fn)
    if q_offset is not None:
        if np.ndim(q_offset) == 0:
            q_offset = np.full(batch, _int(q_offset, "q_offset", fn), dtype=np.int64)
        kw["q_offset"] = q_offset
    return kw


def _shape_error(fn, fmt, *args):
    raise ValueError("%s: " % fn + fmt % args)


def _check_sdpa(fn, q, k, v, mask, key_lengths):
    """Shapes of sdpa's arguments, checked in the user's own shapes and axes
    (the C library sees them padded to rank 4). q, k, v are arrays."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.ndim < 2 or a.ndim > 4:
            _shape_error(fn, "%s has shape %s; q, k, v have rank 2 to 4: (N, d), (H, N, d) or "
                         "(B, H, N, d)", name, a.shape)
    if k.shape[-1] != q.shape[-1]:
        _shape_error(fn, "k.shape[%d]=%d but q.shape[%d]=%d: q and k need the same head size d",
                     k.ndim - 1, k.shape[-1], q.ndim - 1, q.shape[-1])
    if v.shape[-2] != k.shape[-2]:
        _shape_error(fn, "v.shape[%d]=%d but k.shape[%d]=%d: one value per key (Nkv)",
                     v.ndim - 2, v.shape[-2], k.ndim - 2, k.shape[-2])

    def lead(a):  # (B, H) of the rank-4 form, and how the user's array says it
        s = (1,) * (4 - a.ndim) + a.shape
        return s[0], s[1]

    (Bq, H), (Bk, Hk), (Bv, Hv) = lead(q), lead(k), lead(v)

    def heads(a, n):
        return "%d head%s (%s)" % (n, "" if n == 1 else "s", "axis %d" % (a.ndim - 3)
                                   if a.ndim >= 3 else "no head axis")

    if Hv != Hk:
        _shape_error(fn, "v has shape %s, %s, but k has shape %s, %s: k and v need the same "
                     "heads", v.shape, heads(v, Hv), k.shape, heads(k, Hk))
    if H % Hk != 0:
        _shape_error(fn, "q has shape %s, %s, but k has shape %s, %s: the query heads must be "
                     "a multiple of the key/value heads (grouped-query attention)",
                     q.shape, heads(q, H), k.shape, heads(k, Hk))
    for name, a, b in (("k", k, Bk), ("v", v, Bv)):
        if b != Bq:
            _shape_error(fn, "%s has shape %s and q %s: the batch (axis 0 of rank-4 arrays) "
                         "differs", name, a.shape, q.shape)
    B, Nq, Nkv = Bq, q.shape[-2], k.shape[-2]
    _check_mask(fn, mask, (B, H, Nq, Nkv))
    _check_key_lengths(fn, key_lengths, B, Nkv)


def _check_mask(fn, mask, want):
    """mask broadcasts to the scores want = (B, H, Nq, Nkv), NumPy's rule."""
    if mask is None:
        return
    m = np.shape(mask)
    letters = ("B", "H", "Nq", "Nkv")
    for ax in range(len(m)):
        t = 4 - len(m) + ax  # the axis of (B, H, Nq, Nkv) it meets
        if m[ax] == 1 or (t >= 0 and m[ax] == want[t]):
            continue
        what = "1 or %s=%d" % (letters[t], want[t]) if t >= 0 else "1"
        _shape_error(fn, "mask has shape %s: axis %d is %d but must be %s (the mask "
                     "broadcasts to the scores (B, H, Nq, Nkv) = %s, aligned on the right as "
                     "in NumPy)", m, ax, m[ax], what, tuple(want))


def _check_key_lengths(fn, key_lengths, B, Nkv):
    if key_lengths is None:
        return
    kl = np.asarray(key_lengths)
    if kl.ndim > 1 or kl.size != B:
        _shape_error(fn, "key_lengths has shape %s but needs %d values (one per batch entry)",
                     kl.shape, B)
    if kl.dtype.kind in "iu":
        for b, L in enumerate(kl.reshape(-1).tolist()):
            if L < 0 or L > Nkv:
                _shape_error(fn, "key_lengths[%d]=%d but must be in 0..Nkv=%d", b, L, Nkv)


def _check_rank(fn, a, name, lo, hi, what):
    if a.ndim < lo or a.ndim > hi:
        _shape_error(fn, "%s has shape %s; it must be %s", name, a.shape, what)


def _check_proj(fn, x, xname, W, wname, axis, what):
    """W.shape[axis] must equal x's width (its last axis); W's rank is checked."""
    if W.shape[axis] != x.shape[-1]:
        ax = axis % W.ndim
        _shape_error(fn, "%s has shape %s: axis %d must be %s's width %d (%s.shape[%d]); %s",
                     wname, W.shape, ax, xname, x.shape[-1], xname, x.ndim - 1, what)


def _algo(a):
    if isinstance(a, str) and a in _ALGO:
        return a
    raise ValueError("algo must be 'auto', 'reference' or 'flash'; got %r" % (a,))


def _threads(n):
    """num_threads as the C binding takes it: None (every online CPU) or an
    integer >= 0, checked there (1.5 and "2" are refused, not truncated)."""
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


def _col_bias(B, name):
    B = np.asarray(B)
    if B.ndim == 2 and B.shape[1] == 1:
        return B.T  # (1, HS) view
    if B.ndim == 1:
        return B[None, :]
    raise ValueError("%s has shape %s; a bias of the column layout is (HS, 1)" % (name, B.shape))


def _to4(a):
    """Prepend size-1 axes up to rank 4 (views, no copy)."""
    a = np.asarray(a)
    if a.ndim < 2 or a.ndim > 4:
        raise ValueError("sdpa: q, k, v must have rank 2 to 4 ((B, H, N, d)), got shape %s"
                         % (a.shape,))
    return a.reshape((1,) * (4 - a.ndim) + a.shape) if a.ndim < 4 else a


