"""attn.torch: PyTorch drop-ins computed by attn, with autograd (CPU).

    import attn.torch
    out = attn.torch.scaled_dot_product_attention(q, k, v, is_causal=True)
    mha = attn.torch.MultiheadAttention(embed_dim, num_heads, batch_first=True)

`import attn` does not import this module (importing torch takes seconds);
`import attn.torch`, or the first use of the attribute `attn.torch`, does.

scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                             is_causal=False, scale=None, enable_gqa=False)
    PyTorch 2.x's torch.nn.functional.scaled_dot_product_attention:
        query (..., H, L, E);  key (..., Hkv, S, E);  value (..., Hkv, S, Ev)
        -> (..., H, L, Ev)
        scores = query @ key.transpose(-2, -1) * scale + mask   # "...hle,...hse->...hls"
        out = dropout(softmax(scores, -1), dropout_p) @ value    # "...hls,...hsf->...hlf"
    * attn_mask broadcasts to (..., H, L, S). A bool mask: True = the key takes
      part (SDPA's convention). A float mask is added to the scores (-inf hides).
    * is_causal: top-left, key j visible to query i iff j <= i. Given together
      with attn_mask (PyTorch raises there), both apply.
    * scale: None means 1/sqrt(E).
    * enable_gqa: H a multiple of Hkv; query head h reads key/value head
      h // (H // Hkv) (PyTorch's repeat_interleave). Without it Hkv must be H.
    * dropout_p in [0, 1): applied whenever > 0 (a function has no train
      mode). The keep pattern is attn.dropout_keep(seed, b, h, i, j, p); the
      seed is drawn from torch's default generator, so torch.manual_seed
      reproduces a run, and the backward regenerates the same pattern.
    * A row with no visible key gives zeros (as PyTorch >= 2.5), and zero
      gradients.
    * Leading dimensions: query, key and value have the same rank >= 2 and the
      same leading (...) sizes; rank 2 means one head, rank > 4 folds the
      leading dimensions into one batch dimension (a copy only when the
      tensor's strides do not allow a view).

MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                   add_zero_attn=False, kdim=None, vdim=None, batch_first=False,
                   device=None, dtype=None)
    A subclass of torch.nn.MultiheadAttention: the same constructor, the same
    parameters, names and initialisation (a model built after the same
    torch.manual_seed has the same weights), so state dicts load both ways and
    isinstance checks hold. Only forward differs: the projections are PyTorch's
    own F.linear, the attention is attn's. See the class docstring.

Data types, devices, threads
  * CPU tensors of dtype float32, float64 or bfloat16; query, key and value of
    one dtype (as PyTorch requires). attn computes in float32: float32 inputs
    give float32 results; float64 inputs are rounded to float32, the result
    (and the gradients) come back as float64 with float32's accuracy (about
    1e-6 relative); bfloat16 inputs are widened to float32 exactly, the result
    and the gradients are rounded to bfloat16 once at the end. Other dtypes,
    other devices, sparse or quantized tensors raise TypeError / ValueError
    naming the argument.
  * Tensors that require grad, non-contiguous tensors (transposed, sliced,
    expanded) and stride-0 gradients (from out.sum().backward()) are read in
    place, without a copy when they are float32. float32 results are NumPy
    arrays viewed as tensors (torch.from_numpy), not copied.
  * Threads: attn uses torch.get_num_threads() threads per call unless
    set_num_threads(n) or the keyword num_threads=n says otherwise. attn's
    threads come from its own OpenMP team; called from a thread that is
    already inside an OpenMP parallel region (PyTorch's intra-op pool is
    OpenMP in Debian's build) the call runs on that one thread rather than
    oversubscribing, and its result does not depend on the thread count.
    Concurrent calls from several Python threads are safe (the GIL is
    released while attn computes).

Relation to the NumPy attn.MultiHeadAttention: that class holds NumPy arrays
in attn's layout (x @ W), has no autograd and runs the whole module in C (the
projections too); it converts PyTorch state dicts with from_torch_state /
to_torch_state. This module's MultiheadAttention holds torch Parameters in
PyTorch's layout (x @ W.T), trains with autograd, and calls attn only for the
attention between PyTorch's projections. Both compute the same function.
"""

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

import attn as _attn

__all__ = [
    "scaled_dot_product_attention",
    "MultiheadAttention",
    "set_num_threads",
    "get_num_threads",
]

_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
_num_threads_setting = None


def set_num_threads(n):
    """Threads attn uses per call from this module; None: follow
    torch.get_num_threads() (the default). Process-wide."""
    global _num_threads_setting
    if n is not None:
        n = int(n)
        if n < 1:
            raise ValueError("set_num_threads: n must be >= 1 or None (follow torch), got %d" % n)
    _num_threads_setting = n


def get_num_threads():
    """The threads a call uses now: set_num_threads's value, else torch's."""
    if _num_threads_setting is not None:
        return _num_threads_setting
    return max(1, torch.get_num_threads())


def _threads(n):
    if n is None:
        return get_num_threads()
    n = int(n)
    if n < 1:
        raise ValueError("num_threads must be >= 1 or None (follow torch), got %d" % n)
    return n


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------


def _check_tensor(t, name, dtypes=_DTYPES):
    if not isinstance(t, torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.device.type != "cpu":
        raise ValueError("%s is on device %s; attn.torch computes on the CPU (move it with .cpu())"
                         % (name, t.device))
    if t.layout != torch.strided:
        raise TypeError("%s has layout %s; attn.torch takes dense (strided) tensors"
                        % (name, t.layout))
    if t.dtype not in dtypes:
        raise TypeError("%s has dtype %s; attn.torch takes %s" % (
            name, t.dtype, ", ".join(str(d) for d in dtypes)))


def _np(t):
    """A NumPy view of a CPU float32/float64 tensor (no copy, any strides)."""
    t = t.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    return t.numpy()


# --------------------------------------------------------------------------
# Dropout's keep pattern, vectorised (the same hash as attn.dropout_keep)
# --------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def dropout_keep_grid(seed, B, H, L, S, p):
    """keep[b, h, i, j] = attn.dropout_keep(seed, b, h, i, j, p) for the whole
    (B, H, L, S) grid at once, as a bool NumPy array."""
    if not p > 0.0:
        return np.ones((B, H, L, S), bool)
    if p >= 1.0:
        return np.zeros((B, H, L, S), bool)
    ax = [np.arange(n, dtype=np.uint64) for n in (B, H, L, S)]
    with np.errstate(over="ignore"):
        x = _mix(np.uint64(seed) ^ ax[0])[:, None, None, None]
        x = _mix(x ^ ax[1][None, :, None, None])
        x = _mix(x ^ ax[2][None, None, :, None])
        x = _mix(x ^ ax[3][None, None, None, :])
    u = (x >> np.uint64(40)).astype(np.uint32)
    return u >= np.uint32(int(np.float64(np.float32(p)) * 16777216.0))


def _draw_seed():
    """A 63-bit seed from torch's default generator (torch.manual_seed
    reproduces it)."""
    return int(torch.empty((), dtype=torch.int64).random_())


# --------------------------------------------------------------------------
# The autograd Function: (B, H, L, E) tensors, everything checked already
# --------------------------------------------------------------------------


def _sdpa_kwargs(opts, mask_np):
    return dict(scale=opts["scale"], causal=opts["causal"], mask=mask_np,
                key_lengths=opts["key_lengths"], dropout_p=opts["dropout_p"], seed=opts["seed"],
                num_threads=opts["num_threads"])


def _sum_to(g, shape):
    """Sum a full-shape gradient down to a broadcast operand's shape."""
    if tuple(g.shape) == tuple(shape):
        return g
    dims = [i for i, (n, m) in enumerate(zip(g.shape, shape)) if m == 1 and n != 1]
    return g.sum(dim=dims, keepdim=True) if dims else g


class _Attention(torch.autograd.Function):
    """out, lse = attention(q, k, v, mask); lse is not differentiable.
    q (B, H, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev): float32 or float64;
    mask None or a float tensor of rank 4 broadcasting to (B, H, L, S)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, opts):
        mask_np = None if mask is None else _np(mask)
        out, lse = _attn.sdpa(_np(q), _np(k), _np(v), return_lse=True,
                              **_sdpa_kwargs(opts, mask_np))
        out_t, lse_t = torch.from_numpy(out), torch.from_numpy(lse)
        ctx.opts = opts
        ctx.save_for_backward(q, k, v, mask, out_t, lse_t)
        ctx.mark_non_differentiable(lse_t)
        return out_t, lse_t

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlse):
        q, k, v, mask, out, lse = ctx.saved_tensors
        want_dmask = mask is not None and ctx.needs_input_grad[3]
        mask_np = None if mask is None else _np(mask)
        g = _attn.sdpa_backward(_np(q), _np(k), _np(v), _np(out), _np(lse), _np(dout),
                                return_dmask=want_dmask, **_sdpa_kwargs(ctx.opts, mask_np))
        dq = torch.from_numpy(g.dq).to(q.dtype) if ctx.needs_input_grad[0] else None
        dk = torch.from_numpy(g.dk).to(k.dtype) if ctx.needs_input_grad[1] else None
        dv = torch.from_numpy(g.dv).to(v.dtype) if ctx.needs_input_grad[2] else None
        dmask = None
        if want_dmask:
            dmask = _sum_to(torch.from_numpy(g.dmask), mask.shape).to(mask.dtype)
        return dq, dk, dv, dmask, None


class _WeightsFromLse(torch.autograd.Function):
    """w = exp(s - lse[..., None]) (0 where lse is -inf): the softmax of s
    given its log-sum-exp, with the softmax's own gradient
    ds = w * (dw - sum_j w dw)."""

    @staticmethod
    def forward(ctx, s, lse):
        lse = lse.unsqueeze(-1)
        w = torch.exp(s - torch.where(torch.isinf(lse), torch.zeros_like(lse), lse))
        w = torch.where(torch.isneginf(lse), torch.zeros_like(w), w)
        ctx.save_for_backward(w)
        return w

    @staticmethod
    def backward(ctx, dw):
        (w,) = ctx.saved_tensors
        return w * (dw - (w * dw).sum(-1, keepdim=True)), None


# --------------------------------------------------------------------------
# Shapes and masks
# --------------------------------------------------------------------------


def _to4(t):
    """(..., N, E) as (B, H, N, E): H = the last leading size (1 if none),
    B = the product of the others. A view when the strides allow."""
    lead = t.shape[:-2]
    if len(lead) == 0:
        return t.unsqueeze(0).unsqueeze(0)
    if len(lead) == 1:
        return t.unsqueeze(0)
    if len(lead) == 2:
        return t
    return t.reshape((-1,) + tuple(t.shape[-3:]))


def _mask4(m, lead, L, S):
    """A mask broadcasting to lead + (L, S) as rank 4 broadcasting to
    _to4's (B, H, L, S)."""
    r = len(lead) + 2
    if m.dim() < r:
        m = m.reshape((1,) * (r - m.dim()) + tuple(m.shape))
    if r <= 4:
        return m.reshape((1,) * (4 - r) + tuple(m.shape))
    full = tuple(lead[:-1]) + tuple(m.shape[-3:])
    return m.expand(full).reshape((-1,) + tuple(m.shape[-3:]))


_causal_cache = {}
_causal_lock = threading.Lock()


def _causal_bool(L, S):
    """The (L, S) bool matrix True where j > i (hidden by top-left causal)."""
    key = (L, S)
    m = _causal_cache.get(key)
    if m is None:
        m = torch.ones(L, S, dtype=torch.bool).triu(1)
        with _causal_lock:
            if len(_causal_cache) > 64:
                _causal_cache.clear()
            _causal_cache[key] = m
    return m


def _is_causal_hidden(hidden, L, S):
    """True when the bool tensor `hidden` (True = hidden), after dropping
    leading size-1 axes, is exactly the (L, S) top-left causal pattern."""
    if hidden.dim() < 2 or any(n != 1 for n in hidden.shape[:-2]):
        return False
    if tuple(hidden.shape[-2:]) != (L, S):
        return False
    return torch.equal(hidden.reshape(L, S), _causal_bool(L, S))


def _additive(hidden, dtype):
    """A bool `hidden` tensor (True = hidden) as an additive float mask."""
    return torch.zeros(hidden.shape, dtype=dtype).masked_fill_(hidden, float("-inf"))


def _causal_float_hidden(m, L, S):
    """For a float mask: True when it is exactly 0 on and below the diagonal
    and -inf above it (what generate_square_subsequent_mask builds)."""
    if m.requires_grad or m.dim() < 2 or any(n != 1 for n in m.shape[:-2]):
        return False
    if tuple(m.shape[-2:]) != (L, S):
        return False
    m2 = m.reshape(L, S)
    c = _causal_bool(L, S)
    return bool(torch.equal(torch.isneginf(m2), c)) and bool(torch.equal(m2 == 0, ~c))


# --------------------------------------------------------------------------
# scaled_dot_product_attention
# --------------------------------------------------------------------------


def _attention4(q, k, v, mask, causal, key_lengths, dropout_p, seed, scale, num_threads):
    """The checked core on rank-4 tensors: returns (out, lse) in the compute
    dtype of q (float32 or float64; bfloat16 was widened by the caller)."""
    opts = dict(scale=None if scale is None else float(scale), causal=causal,
                key_lengths=key_lengths, dropout_p=float(dropout_p), seed=int(seed),
                num_threads=num_threads)
    return _Attention.apply(q, k, v, mask, opts)


def _check_qkv(query, key, value, enable_gqa, fn):
    for t, name in ((query, "query"), (key, "key"), (value, "value")):
        _check_tensor(t, name)
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError("%s: query, key and value must have one dtype, got %s, %s, %s"
                        % (fn, query.dtype, key.dtype, value.dtype))
    if query.dim() < 2 or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError("%s: query, key and value must have the same rank >= 2 "
                         "((..., L, E), (..., S, E), (..., S, Ev)), got shapes %s, %s, %s"
                         % (fn, tuple(query.shape), tuple(key.shape), tuple(value.shape)))
    if key.shape[-1] != query.shape[-1]:
        raise ValueError("%s: key.shape[-1]=%d but query.shape[-1]=%d (head size E must match)"
                         % (fn, key.shape[-1], query.shape[-1]))
    if value.shape[-2] != key.shape[-2]:
        raise ValueError("%s: value.shape[-2]=%d but key.shape[-2]=%d (S must match)"
                         % (fn, value.shape[-2], key.shape[-2]))
    if query.dim() >= 3:
        if tuple(key.shape[:-3]) != tuple(query.shape[:-3]) or \
                tuple(value.shape[:-3]) != tuple(query.shape[:-3]) or \
                key.shape[-3] != value.shape[-3]:
            raise ValueError("%s: the leading dimensions of query %s, key %s and value %s "
                             "must match (no broadcasting)"
                             % (fn, tuple(query.shape), tuple(key.shape), tuple(value.shape)))
        H, Hkv = query.shape[-3], key.shape[-3]
        if H != Hkv:
            if not enable_gqa:
                raise ValueError("%s: query has %d heads (shape[-3]) but key and value %d; "
                                 "pass enable_gqa=True for grouped-query attention"
                                 % (fn, H, Hkv))
            if Hkv == 0 or H % Hkv != 0:
                raise ValueError("%s: enable_gqa needs query's heads (%d) to be a multiple of "
                                 "key's (%d)" % (fn, H, Hkv))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False, *,
                                 num_threads=None):
    """PyTorch 2.x's F.scaled_dot_product_attention, computed by attn on the
    CPU with autograd. See the module docstring for shapes and semantics;
    num_threads (keyword only, not in PyTorch) overrides get_num_threads()."""
    fn = "scaled_dot_product_attention"
    _check_qkv(query, key, value, enable_gqa, fn)
    p = float(dropout_p)
    if not 0.0 <= p < 1.0:
        raise ValueError("%s: dropout_p must be in [0, 1), got %r" % (fn, dropout_p))
    nt = _threads(num_threads)
    lead, L, S = tuple(query.shape[:-2]), query.shape[-2], key.shape[-2]
    out_dtype = query.dtype
    cdt = torch.float32 if out_dtype == torch.bfloat16 else out_dtype
    causal = "top_left" if is_causal else "none"
    mask = None
    if attn_mask is not None:
        _check_tensor(attn_mask, "attn_mask", _DTYPES + (torch.bool,))
        want = lead + (L, S)
        try:
            ok = tuple(torch.broadcast_shapes(tuple(attn_mask.shape), want)) == want
        except RuntimeError:
            ok = False
        if not ok or attn_mask.dim() > len(want):
            raise ValueError("%s: attn_mask of shape %s does not broadcast to %s "
                             "(query's leading dimensions, L, S)"
                             % (fn, tuple(attn_mask.shape), want))
        if attn_mask.dtype == torch.bool:
            hidden = ~attn_mask
            if _is_causal_hidden(hidden, L, S):
                causal = "top_left"
            else:
                mask = _mask4(_additive(hidden, cdt), lead, L, S)
        else:
            mask = _mask4(attn_mask.to(cdt), lead, L, S)
    q4, k4, v4 = (_to4(t).to(cdt) for t in (query, key, value))
    seed = _draw_seed() if p > 0 else 0
    out, _ = _attention4(q4, k4, v4, mask, causal, None, p, seed, scale, nt)
    out = out.reshape(lead + (L, value.shape[-1]))
    return out.to(out_dtype)


# --------------------------------------------------------------------------
# MultiheadAttention
# --------------------------------------------------------------------------


def _mha_mask(m, name, dtype):
    """An MHA mask (bool: True = masked, MHA's convention; float: added) as
    (bool hidden or None, float additive or None)."""
    _check_tensor(m, name, _DTYPES + (torch.bool, torch.uint8))
    if m.dtype in (torch.bool, torch.uint8):
        return m.to(torch.bool), None
    return None, m.to(dtype)


def _right_padding_lengths(hidden):
    """For a bool (B, S) key padding mask (True = padding): the key lengths
    when every row is a run of visible keys then a run of padding, else None."""
    B, S = hidden.shape
    lengths = (~hidden).sum(1)
    if not torch.equal(hidden, torch.arange(S)[None, :] >= lengths[:, None]):
        return None
    return lengths.numpy().astype(np.int64)


class MultiheadAttention(torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention with attn computing the attention.

    Same constructor, parameters (in_proj_weight or q/k/v_proj_weight,
    in_proj_bias, out_proj.weight, out_proj.bias, bias_k, bias_v) and
    initialisation as the parent; state dicts load both ways.

    forward(query, key, value, key_padding_mask=None, need_weights=True,
            attn_mask=None, average_attn_weights=True, is_causal=False)
        query (L, B, E) or (B, L, E) with batch_first, or (L, E) unbatched;
        key (S, B, kdim), value (S, B, vdim) likewise.
        key_padding_mask (B, S) or (S,): bool True = ignore that key, or
            float, added.
        attn_mask (L, S) or (B*num_heads, L, S): bool True = NOT allowed to
            attend (MHA's convention, the opposite of SDPA's), or float, added.
        is_causal: the hint of PyTorch 2.x; needs attn_mask and then uses the
            causal rule instead of attn_mask's values.
        -> (attn_output (L, B, E) or (B, L, E), weights or None)
        weights (B, L, S) averaged over heads, or (B, num_heads, L, S) with
            average_attn_weights=False; computed from attn's log-sum-exp as
            exp(scores - lse) (one score matmul, no second softmax pass), after
            dropout as PyTorch's; differentiable.
    Dropout (self.dropout) applies in train mode only. A bool attn_mask equal
    to the causal pattern (and a float one of 0 and -inf in that pattern)
    runs attn's causal path; a right-aligned bool key_padding_mask runs as
    key lengths: the same results, less work. Rows where every key is masked
    give zeros (PyTorch's MHA gives NaN there).
    """

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        fn = "MultiheadAttention"
        for t, name in ((query, "query"), (key, "key"), (value, "value")):
            _check_tensor(t, name)
        if not (query.dtype == key.dtype == value.dtype):
            raise TypeError("%s: query, key and value must have one dtype, got %s, %s, %s"
                            % (fn, query.dtype, key.dtype, value.dtype))
        batched = query.dim() == 3
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError("%s: query, key and value must all be 3-d (batched) or 2-d "
                             "(unbatched), got shapes %s, %s, %s"
                             % (fn, tuple(query.shape), tuple(key.shape), tuple(value.shape)))
        self_attn = query is key and key is value
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if self_attn:
                key = value = query
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        # The caller's layout is kept (no transposes): bf = (B, N, E), else (N, B, E).
        bf = self.batch_first and batched
        nb, ns = (0, 1) if bf else (1, 0)  # the batch and the sequence axes
        B, L, E = query.shape[nb], query.shape[ns], query.shape[2]
        S = key.shape[ns]
        nh, hd = self.num_heads, self.head_dim
        if E != self.embed_dim:
            raise ValueError("%s: query.shape[-1]=%d but embed_dim=%d" % (fn, E, self.embed_dim))
        if key.shape[nb] != B or value.shape[nb] != B or value.shape[ns] != S:
            raise ValueError("%s: key %s and value %s do not match query %s in batch and source "
                             "length" % (fn, tuple(key.shape), tuple(value.shape),
                                         tuple(query.shape)))
        if key.shape[2] != self.kdim or value.shape[2] != self.vdim:
            raise ValueError("%s: key.shape[-1]=%d, value.shape[-1]=%d but kdim=%d, vdim=%d"
                             % (fn, key.shape[2], value.shape[2], self.kdim, self.vdim))
        out_dtype = query.dtype
        cdt = torch.float32 if out_dtype == torch.bfloat16 else out_dtype

        # 1. projections (PyTorch's own F.linear, autograd by PyTorch)
        w, b = self.in_proj_weight, self.in_proj_bias
        bq = bk = bv = None
        if b is not None:
            bq, bk, bv = b.chunk(3)
        if self._qkv_same_embed_dim:
            if self_attn:
                q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
            else:
                wq, wk, wv = w.chunk(3)
                q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
        else:
            q = F.linear(query, self.q_proj_weight, bq)
            k = F.linear(key, self.k_proj_weight, bk)
            v = F.linear(value, self.v_proj_weight, bv)

        # 2. masks: hidden (bool, True = masked) or additive float, (B|1, H|1, L|1, S)
        kpm_hidden = kpm_add = None
        if key_padding_mask is not None:
            kpm_hidden, kpm_add = _mha_mask(key_padding_mask, "key_padding_mask", cdt)
            km = kpm_hidden if kpm_hidden is not None else kpm_add
            if tuple(km.shape) != (B, S):
                raise ValueError("%s: key_padding_mask has shape %s, expected %s" % (
                    fn, tuple(key_padding_mask.shape), (B, S) if batched else (S,)))
        am_hidden = am_add = None
        causal = "none"
        if is_causal and attn_mask is None:
            raise ValueError("%s: is_causal=True is a hint that needs attn_mask (as in PyTorch)"
                             % fn)
        if attn_mask is not None:
            if is_causal:
                causal = "top_left"
            else:
                am_hidden, am_add = _mha_mask(attn_mask, "attn_mask", cdt)
                am = am_hidden if am_hidden is not None else am_add
                if am.dim() == 2 and tuple(am.shape) == (L, S):
                    am = am.reshape(1, 1, L, S)
                elif am.dim() == 3 and tuple(am.shape) == (B * nh, L, S):
                    am = am.reshape(B, nh, L, S)
                else:
                    raise ValueError("%s: attn_mask has shape %s, expected (L, S) = %s or "
                                     "(B*num_heads, L, S) = %s" % (fn, tuple(attn_mask.shape),
                                                                   (L, S), (B * nh, L, S)))
                if am_hidden is not None:
                    am_hidden = am
                    if _is_causal_hidden(am, L, S):
                        causal, am_hidden = "top_left", None
                else:
                    am_add = am
                    if _causal_float_hidden(am, L, S):
                        causal, am_add = "top_left", None

        # (B, H, N, hd) views of the (B, N, E) or (N, B, E) projections
        def heads(t):
            if bf:
                return t.reshape(B, t.shape[1], nh, hd).permute(0, 2, 1, 3)
            return t.reshape(t.shape[0], B, nh, hd).permute(1, 2, 0, 3)

        q, k, v = heads(q), heads(k), heads(v)
        extra = 0
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.reshape(1, nh, 1, hd).expand(B, nh, 1, hd)], dim=2)
            v = torch.cat([v, self.bias_v.reshape(1, nh, 1, hd).expand(B, nh, 1, hd)], dim=2)
            extra += 1
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(B, nh, 1, hd)], dim=2)
            v = torch.cat([v, v.new_zeros(B, nh, 1, hd)], dim=2)
            extra += 1
        Sx = S + extra
        if causal != "none" and extra:
            # the appended keys stay visible to every query: causal becomes a mask
            am_hidden, causal = _causal_bool(L, S).reshape(1, 1, L, S), "none"

        def pad(m, value):
            return F.pad(m, (0, extra), value=value) if (extra and m is not None) else m

        am_hidden, am_add = pad(am_hidden, False), pad(am_add, 0.0)
        kpm_hidden, kpm_add = pad(kpm_hidden, False), pad(kpm_add, 0.0)

        key_lengths = None
        if kpm_hidden is not None and am_add is None and kpm_add is None:
            key_lengths = _right_padding_lengths(kpm_hidden)
            if key_lengths is not None:
                kpm_hidden = None
        mask = None
        if kpm_hidden is not None:
            mask = _additive(kpm_hidden.reshape(B, 1, 1, Sx), cdt)
        if kpm_add is not None:
            m = kpm_add.reshape(B, 1, 1, Sx)
            mask = m if mask is None else mask + m
        if am_hidden is not None:
            m = _additive(am_hidden, cdt)
            mask = m if mask is None else mask + m
        if am_add is not None:
            mask = am_add if mask is None else mask + am_add

        # 3. attention (attn)
        p = self.dropout if self.training else 0.0
        if not 0.0 <= p < 1.0:
            raise ValueError("%s: dropout must be in [0, 1) in train mode, got %r" % (fn, p))
        seed = _draw_seed() if p > 0 else 0
        q4, k4, v4 = q.to(cdt), k.to(cdt), v.to(cdt)
        out, lse = _attention4(q4, k4, v4, mask, causal, key_lengths, p, seed, None,
                               get_num_threads())

        # 4. output projection: (B, H, L, hd) -> (B, L, E) or (L, B, E)
        if bf:
            out = out.permute(0, 2, 1, 3).reshape(B, L, E)
        else:
            out = out.permute(2, 0, 1, 3).reshape(L, B, E)
        out = F.linear(out.to(out_dtype), self.out_proj.weight, self.out_proj.bias)
        if not batched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None

        # 5. weights from the lse: exp(scale * q.k + mask - lse), after dropout
        s = torch.matmul(q4, k4.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        if mask is not None:
            s = s + mask
        if causal == "top_left":
            s = s.masked_fill(_causal_bool(L, Sx), float("-inf"))
        if key_lengths is not None:
            hidden = torch.arange(Sx)[None, :] >= torch.from_numpy(key_lengths)[:, None]
            s = s.masked_fill(hidden.reshape(B, 1, 1, Sx), float("-inf"))
        wts = _WeightsFromLse.apply(s, lse)
        if p > 0:
            keep = torch.from_numpy(dropout_keep_grid(seed, B, nh, L, Sx, p))
            wts = wts * keep.to(wts.dtype) * (1.0 / (1.0 - p))
        if average_attn_weights:
            wts = wts.mean(dim=1)
        if not batched:
            wts = wts.squeeze(0)
        return out, wts.to(out_dtype)
