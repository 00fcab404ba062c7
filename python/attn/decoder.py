"""The pieces of a Llama-style decoder layer: rotary position embedding
(rope and its inv_freq tables for the usual scalings) and RMS normalisation.
Grouped-query attention itself is MultiHeadAttention(num_kv_heads=...)."""

import numpy as np

from ._convert import _attn

_STYLES = ("neox", "gptj")


def rope(x, positions, *, rotary_dim=None, style="neox", base=10000.0, inv_freq=None,
         mscale=1.0, out=None):
    """Rotary position embedding of q or k, a new array (or written to out).

        x (..., N, d), rank >= 2, e.g. q (B, H, N, d)
        positions: integers, (N,) shared by every leading index, or any shape
            broadcasting to x.shape[:-1] (e.g. (B, 1, N) per sequence)
        rotary_dim r: even, <= d (None: d); dims r.. are copied unchanged
        style: "neox" pairs (t, t + r/2) (Hugging Face rotate_half: Llama,
            Mistral, Qwen); "gptj" pairs (2t, 2t+1) (Meta's complex form)
        inv_freq: r/2 frequencies (float64 kept), or None: base**(-2t/r)
        mscale: multiplies cos and sin (YaRN's attention factor)

    With theta_t = position * inv_freq[t] (in double) and (a, b) pair t:
        a' = (a cos theta_t - b sin theta_t) * mscale
        b' = (b cos theta_t + a sin theta_t) * mscale
    i.e. x*cos + rotate_half(x)*sin for "neox". The result is float64 when x
    is (computed in float32 like everything in attn). out: a writable float32
    array of x's shape; it may be x itself (in place); out is returned.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError("rope: x has shape %s; it must be (..., N, d)" % (x.shape,))
    if style not in _STYLES:
        raise ValueError("rope: style must be 'neox' (rotate_half) or 'gptj' (interleaved); "
                         "got %r" % (style,))
    pos = np.asarray(positions)
    if not np.issubdtype(pos.dtype, np.integer):
        raise TypeError("rope: positions has dtype %s; it must hold integers" % pos.dtype)
    lead = x.shape[:-1]
    if pos.shape != (x.shape[-2],):
        try:
            pos = np.broadcast_to(pos, lead)
        except ValueError:
            raise ValueError("rope: positions has shape %s; it must be (N,) = (%d,) or "
                             "broadcast to x.shape[:-1] = %s" % (pos.shape, x.shape[-2], lead))
        pos = np.ascontiguousarray(pos).reshape(-1)
    r = 0 if rotary_dim is None else rotary_dim
    kw = dict(rotary_dim=r, style=style, base=base, inv_freq=inv_freq, mscale=mscale)
    if x.ndim <= 4:
        return _attn.rope(x, pos, out=out, **kw)
    # Rank > 4: the leading axes as one; out must reshape without a copy.
    shape4 = (-1,) + x.shape[-3:]
    o4 = None
    if out is not None:
        if out.shape != x.shape:
            raise ValueError("rope: out has shape %s but x has %s" % (out.shape, x.shape))
        o4 = out.view()
        try:
            o4.shape = shape4
        except AttributeError:
            raise ValueError("rope: out of rank > 4 must be reshapable without a copy")
    in_place = out is not None and np.shares_memory(out, x)
    y = _attn.rope(o4 if in_place else x.reshape(shape4), pos, out=o4, **kw)
    return out if out is not None else y.reshape(x.shape)


def rms_norm(x, gamma=None, eps=1e-6, *, out=None):
    """RMS normalisation over the last axis (Llama's RMSNorm):

        x (..., D);  gamma (D,) or None (1)  ->  same shape as x
        y = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + eps) * gamma

    The mean of squares is taken in double. out: a writable float32 array of
    x's shape, x itself allowed (in place); out is returned.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("rms_norm: x must have at least one dimension")
    if x.ndim <= 4:
        return _attn.rms_norm(x, gamma, float(eps), out=out)
    if out is not None:
        raise ValueError("rms_norm: out= takes arrays of rank <= 4")
    return _attn.rms_norm(x.reshape(-1, x.shape[-1]), gamma, float(eps)).reshape(x.shape)


def rope_inv_freq(rotary_dim, base=10000.0):
    """The unscaled table base**(-2t/r), t < r/2, float64 (HF "default")."""
    return _attn.rope_inv_freq("default", rotary_dim, base)[0]


def rope_inv_freq_linear(rotary_dim, factor, base=10000.0):
    """Position interpolation (HF "linear"): base**(-2t/r) / factor."""
    return _attn.rope_inv_freq("linear", rotary_dim, base, factor)[0]


def rope_inv_freq_ntk(rotary_dim, alpha, base=10000.0):
    """NTK-aware scaling: base' = base * alpha**(r/(r-2)), then base'**(-2t/r).
    HF's "dynamic" type at length L (max_position_embeddings M) is
    alpha = factor * L / M - (factor - 1)."""
    return _attn.rope_inv_freq("ntk", rotary_dim, base, alpha)[0]


def rope_inv_freq_llama3(rotary_dim, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                         original_max_position=8192, base=500000.0):
    """Llama 3.1's scaling (HF "llama3"); the defaults are Llama 3.1's."""
    return _attn.rope_inv_freq("llama3", rotary_dim, base, factor, low_freq_factor,
                               high_freq_factor, original_max_position)[0]


def rope_inv_freq_yarn(rotary_dim, factor, original_max_position, beta_fast=32.0, beta_slow=1.0,
                       base=10000.0):
    """YaRN (HF "yarn"): returns (inv_freq, mscale); pass mscale to rope()."""
    return _attn.rope_inv_freq("yarn", rotary_dim, base, factor, None, None,
                               original_max_position, beta_fast, beta_slow)
