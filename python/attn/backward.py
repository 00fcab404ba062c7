"""Gradients of sdpa (training): sdpa_backward."""

from collections import namedtuple

import numpy as np

from ._convert import _algo, _attn, _causal, _check_sdpa, _modifiers, _to4

_FIELDS = {
    (False, False): ("dq", "dk", "dv"),
    (True, False): ("dq", "dk", "dv", "dmask"),
    (False, True): ("dq", "dk", "dv", "dsinks"),
    (True, True): ("dq", "dk", "dv", "dmask", "dsinks"),
}
_TYPES = {key: namedtuple("SdpaGrads", fields) for key, fields in _FIELDS.items()}


def sdpa_backward(q, k, v, out, lse, dout, *, scale=None, causal="none", mask=None,
                  key_lengths=None, dropout_p=0.0, seed=0, num_threads=None, algo="auto",
                  window=None, softcap=None, alibi_slopes=None, sinks=None, q_offset=None,
                  k_offset=None, return_dmask=False, return_dsinks=False):
    """Gradients of sdpa(q, k, v, **options) given dout = dLoss/dout.

    out, lse = sdpa(q, k, v, return_lse=True, **options) from the forward,
    with the very same options (dropout_p and seed regenerate the forward's
    keep pattern: the same weights drop). Shapes as sdpa's:
        q (B, H, Nq, d);  k (B, Hkv, Nkv, d);  v (B, Hkv, Nkv, dv)
        out, dout (B, H, Nq, dv);  lse (B, H, Nq)   (lower ranks as in sdpa)
    With P the weights before dropout, Z = keep / (1 - p), g = h // (H // Hkv):
        dP = Z * einsum("bhif,bgjf->bhij", dout, v)
        D  = einsum("bhif,bhif->bhi", dout, out)
        dS = P * (dP - D[..., None])
        dq = scale * einsum("bhij,bgje->bhie", dS', k)    dS' = dS through softcap
        dk = scale * einsum("bhij,bhie->bgje", dS', q)    summed over each group
        dv = einsum("bhij,bhif->bgjf", P * Z, dout)       of H // Hkv query heads
    Returns a named tuple (dq, dk, dv), shaped as q, k, v, plus
        dmask (return_dmask=True): dS in the mask's own shape, broadcast axes
            summed (hidden entries, -inf, get 0);
        dsinks (return_sinks=True): (H,) = -sum over b, i of
            exp(sinks[h] - lse) * D.
    Rows with no visible key give zero gradients; NaN/Inf in hidden keys
    never reach them. The fast path (algo "auto"/"flash") is bit-identical
    for any num_threads; "reference" is the float64 loops of the C library.
    """
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    if np.ndim(key_lengths) == 0 and key_lengths is not None:
        key_lengths = [key_lengths]
    _check_sdpa("sdpa_backward", q, k, v, mask, key_lengths)
    q4, k4, v4 = _to4(q), _to4(k), _to4(v)
    out4, dout4 = _to4(out), _to4(dout)
    lse = np.asarray(lse)
    lse3 = lse.reshape((1,) * (3 - lse.ndim) + lse.shape) if 1 <= lse.ndim < 3 else lse
    causal = _causal(causal, q.shape[-2], k.shape[-2], key_lengths, fn="sdpa_backward")
    mods = _modifiers("sdpa_backward", q4.shape[0], window, softcap, alibi_slopes, sinks,
                      q_offset, k_offset)
    dq, dk, dv, dmask, dsinks = _attn.sdpa_backward(
        q4, k4, v4, out4, lse3, dout4, scale, causal, mask, key_lengths, dropout_p, seed,
        num_threads, _algo(algo), want_dmask=bool(return_dmask),
        want_dsinks=bool(return_dsinks), **mods)
    res = [dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)]
    if return_dmask:
        res.append(dmask.reshape(np.shape(mask)))
    if return_dsinks:
        res.append(dsinks)
    return _TYPES[(bool(return_dmask), bool(return_dsinks))](*res)
