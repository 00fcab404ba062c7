"""Shared helpers of the attn package: argument spellings, dtype checks and
the stacking of per-head weights. The C side of the conversion (arrays to
views, the GIL, errors) is python/ext/convert.h; what it documents for users
is in the package docstring (attn/__init__.py)."""

import numpy as np

from . import _attn  # noqa: F401  (re-exported for the concern modules)


_CAUSAL = ("none", "top_left", "bottom_right")
_ALGO = ("auto", "reference", "flash")


def _causal(c):
    """The C binding's spelling of a causal option."""
    if c is None or c is False:
        return "none"
    if isinstance(c, str) and c in _CAUSAL:
        return c
    raise ValueError(
        "causal must be 'none', 'top_left' (j <= i, PyTorch's is_causal) or "
        "'bottom_right' (j <= i + Nkv - Nq, FlashAttention's); got %r" % (c,)
    )


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


