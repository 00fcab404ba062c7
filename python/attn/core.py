"""The general attention API: sdpa and merge."""

import numpy as np

from ._convert import _algo, _attn, _causal, _check_sdpa, _int, _modifiers, _threads, _to4


def alibi_slopes(H):
    """The ALiBi paper's slopes for H heads, float32 (H,) (attn_alibi_slopes):
    2^(-8h/H) for h = 1..H when H is a power of two; otherwise the n slopes
    of n heads, n the largest power of two below H, followed by the first
    H - n slopes of 2n heads at odd h. Pass them as sdpa(..., alibi_slopes=).
    """
    return _attn.alibi_slopes(H)


def sdpa(q, k, v, *, scale=None, causal="none", mask=None, key_lengths=None, dropout_p=0.0,
         seed=0, return_lse=False, return_weights=False, num_threads=None, algo="auto",
         window=None, softcap=None, alibi_slopes=None, sinks=None, q_offset=None,
         k_offset=None):
    """Scaled dot-product attention, grouped-query K/V, masks, dropout, and
    the score modifiers of modern models (window, softcap, ALiBi, sinks).

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
            FlashAttention's, for decoding with a cache). Equal when Nq == Nkv;
            True is accepted exactly there (Nq == Nkv, no key_lengths) and is
            a ValueError elsewhere. "top-left" and "bottom-right" also work.
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

    Score modifiers (design.md "Score modifiers", attn.h attn_opts). Query i
    of batch b sits at position p(i) = q_offset[b] + i, key j at k_offset + j,
    dist = p(i) - (k_offset + j); by default q_offset[b] = 0 with "top_left"
    and L_b - Nq otherwise (bottom-right alignment), k_offset = 0. A causal
    rule then means dist >= 0. For each visible key, in this order:
        s = scale * q_i . k_j
        s = softcap * tanh(s / softcap)            softcap > 0
        s = s - alibi_slopes[h] * |dist|           alibi_slopes (H,)
        s = s + mask[b, h, i, j]                   mask
        w = exp(s) / (sum_j exp(s_j) + exp(sinks[h]))      sinks (H,)
        window=(left, right): key j visible only if dist <= left and
            -dist <= right; None or -1 for a side: unbounded (a model's
            sliding_window = S is window=(S - 1, None) with a causal rule).
        softcap: None or 0 = off; else finite > 0 (Gemma 2: 50.0).
        alibi_slopes: H finite values, e.g. alibi_slopes(H) (BLOOM, MPT).
        sinks: H finite logits in the denominator only (gpt-oss); a row with
            no visible key then gives out 0 and lse = sinks[h].
        q_offset: B integers (or one for every batch entry); k_offset: one.

    A row with no visible key gives zeros. Returns out, or a tuple
    (out, lse?, weights?) when return_lse or return_weights is set; lse and
    weights have the rank of q minus one and the rank of q.
    """
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    if np.ndim(key_lengths) == 0 and key_lengths is not None:
        key_lengths = [key_lengths]
    _check_sdpa("sdpa", q, k, v, mask, key_lengths)
    q4, k4, v4 = _to4(q), _to4(k), _to4(v)
    causal = _causal(causal, q.shape[-2], k.shape[-2], key_lengths)
    mods = _modifiers("sdpa", q4.shape[0], window, softcap, alibi_slopes, sinks, q_offset,
                      k_offset)
    out, lse, w = _attn.sdpa(q4, k4, v4, scale, causal, mask, key_lengths, dropout_p, seed,
                             num_threads, _algo(algo), want_lse=bool(return_lse),
                             want_weights=bool(return_weights), **mods)
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
    outs, lses = list(outs), list(lses)
    if len(outs) != len(lses):
        raise ValueError("merge: %d arrays in outs but %d in lses (one lse per partial output)"
                         % (len(outs), len(lses)))
    if outs:
        s0 = np.shape(outs[0])
        for p, (o, l) in enumerate(zip(outs, lses)):
            if np.shape(o) != s0:
                raise ValueError("merge: outs[%d] has shape %s but outs[0] has %s"
                                 % (p, np.shape(o), s0))
            if np.shape(l) != s0[:-1]:
                raise ValueError("merge: lses[%d] has shape %s but must be %s (outs[%d]'s "
                                 "shape without its last axis)" % (p, np.shape(l), s0[:-1], p))
    return _attn.merge(outs, lses)


