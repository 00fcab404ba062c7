"""The general attention API: sdpa and merge."""

import numpy as np

from ._convert import _algo, _attn, _causal, _threads, _to4

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
    out, lse, w = _attn.sdpa(q4, k4, v4, scale, _causal(causal), mask, key_lengths, dropout_p,
                             seed, num_threads, _algo(algo), bool(return_lse),
                             bool(return_weights))
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


