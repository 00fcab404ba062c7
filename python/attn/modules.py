"""Modules holding weights or applying them: MultiHeadAttention, linear,
layer_norm."""

import numpy as np

from ._convert import (_algo, _attn, _causal, _check_key_lengths, _check_mask, _check_proj,
                       _check_rank, _int, _modifiers, _shape_error, _stack_bias, _stack_heads,
                       _threads)


def layer_norm(x, gamma=None, beta=None, eps=1e-5):
    """Layer normalisation over the last axis (biased variance, as PyTorch).

        x (..., D);  gamma, beta (D,) or None (1 and 0)  ->  same shape as x
        mu = x.mean(-1, keepdims=True);  var = ((x - mu)**2).mean(-1, keepdims=True)
        y = (x - mu) / np.sqrt(var + eps) * gamma + beta
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("layer_norm: x must have at least one dimension")
    for name, g in (("gamma", gamma), ("beta", beta)):
        if g is not None and np.shape(g) != x.shape[-1:]:
            raise ValueError("layer_norm: %s has shape %s but must be (%d,): one value per "
                             "feature of x's last axis (x.shape[%d])"
                             % (name, np.shape(g), x.shape[-1], x.ndim - 1))
    if x.ndim <= 4:
        return _attn.layer_norm(x, gamma, beta, float(eps))
    y = _attn.layer_norm(x.reshape(-1, x.shape[-1]), gamma, beta, float(eps))
    return y.reshape(x.shape)


class PackedWeight:
    """A weight W (in, out) packed for decoding's projections (attn_weight_pack).

    ``attn.linear(x, attn.pack_weight(W), b)`` gives the bits of
    ``attn.linear(x, W, b)`` with at most 8 rows of x, reading the weight in
    memory order: with few rows, at the speed of a read-only stream over it
    (docs/threads.md). Pack once, when the weights are loaded.

        data           float32 (ceil(out / 48), in, 48): data[p, i, c] = W[i, 48 p + c],
                       0 past the last column
        shape          (in, out), W's shape
    """

    __slots__ = ("data", "shape")

    def __init__(self, data, shape):
        self.data, self.shape = data, shape

    def __repr__(self):
        return "PackedWeight(shape=%s, panels=%d)" % (self.shape, self.data.shape[0])


def pack_weight(W):
    """W (in, out), float32 or float64, any strides -> PackedWeight (float32)."""
    W = np.asarray(W)
    _check_rank("pack_weight", W, "W", 2, 2, "a matrix (in, out)")
    return PackedWeight(_attn.pack_weight(W), W.shape)


def linear(x, W, b=None, *, num_threads=None):
    """Linear layer in the article's layout: y = x @ W + b.

        x (..., in);  W (in, out) or pack_weight(W);  b (out,) or None  ->  (..., out)
        y[n, o] = sum_i x[n, i] W[i, o] + b[o]        # einsum "ni,io->no"

    Ranks above 3 are reshaped to (-1, in). Uses BLAS sgemm when the library
    was built with it and x has more than 8 rows. With a PackedWeight, every
    row count runs attn_linear_packed (each 8 rows read the weight once: for
    many rows a plain W is faster).
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("linear: x must have at least one dimension")
    nt = _threads(num_threads)
    if isinstance(W, PackedWeight):
        if W.shape[0] != x.shape[-1]:
            _shape_error("linear", "W is a PackedWeight of shape %s: its in=%d must be x's width "
                         "%d (x.shape[%d]); W is (in, out), applied as x @ W",
                         W.shape, W.shape[0], x.shape[-1], x.ndim - 1)
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        y = _attn.linear_packed(x2, W.data, W.shape[1], b, nt)
        return y.reshape(x.shape[:-1] + (W.shape[1],))
    W = np.asarray(W)
    _check_rank("linear", W, "W", 2, 2, "a matrix (in, out)")
    _check_proj("linear", x, "x", W, "W", 0, "W is (in, out), applied as x @ W")
    if x.ndim <= 3:
        return _attn.linear(x, W, b, nt)
    y = _attn.linear(x.reshape(-1, x.shape[-1]), W, b, nt)
    return y.reshape(x.shape[:-1] + (y.shape[-1],))


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

    Grouped-query attention (Llama 2/3, Mistral): num_kv_heads=Hkv, a divisor
    of NH. Fused: Wqkv (D, (NH + 2*Hkv)*HS) with columns [q | k | v] (HS =
    Wqkv.shape[1] / (NH + 2*Hkv)), bqkv ((NH + 2*Hkv)*HS,). Per head: Wk, Wv,
    bk, bv stack Hkv heads (num_kv_heads defaults to Wk's count). Query head
    h reads kv head h // (NH // Hkv): the same as np.repeat(Wk, NH // Hkv, 0).

    Call: mha(x) for self-attention, mha(xq, xkv) for cross-attention.
        xq (B, Nq, Dq) or (Nq, Dq);  xkv (B, Nkv, Dkv) or (Nkv, Dkv)
        -> (B, Nq, Dout)
        q[b,h,i,e] = sum_c xq[b,i,c] Wq[h,c,e] + bq[h,e]   # "bic,hce->bhie"
        k[b,g,j,e] = sum_c xkv[b,j,c] Wk[g,c,e] + bk[g,e]  # "bjc,gce->bgje"
        v[b,g,j,f] = sum_c xkv[b,j,c] Wv[g,c,f] + bv[g,f]  # "bjc,gcf->bgjf"
        a = sdpa(q, k, v, causal, mask, key_lengths, ...)  # (B, NH, Nq, HSv)
        out = a.transpose(0, 2, 1, 3).reshape(B, Nq, NH*HSv) @ Wo + bo

    Keyword options of the constructor (defaults for calls) and of calls:
    causal ("none", "top_left", "bottom_right"; True where Nq == Nkv), scale,
    dropout_p, num_threads, and the score modifiers of the model: window
    (left, right), softcap, alibi_slopes (NH,), sinks (NH,); calls also take
    mask (additive, broadcasting to (B, NH, Nq, Nkv)), key_lengths (B,), seed
    and the positions q_offset (B,) and k_offset. See sdpa().
    """

    def __init__(self, num_heads=None, *, Wqkv=None, bqkv=None, Wq=None, Wk=None, Wv=None,
                 bq=None, bk=None, bv=None, Wo=None, bo=None, causal="none", scale=None,
                 dropout_p=0.0, num_threads=None, window=None, softcap=None, alibi_slopes=None,
                 sinks=None, num_kv_heads=None):
        if Wqkv is not None:
            if num_heads is None:
                raise ValueError("MultiHeadAttention: the fused form needs num_heads")
            if any(w is not None for w in (Wq, Wk, Wv, bq, bk, bv)):
                raise ValueError("MultiHeadAttention: give either Wqkv (fused) or Wq, Wk, Wv")
            self.fused = True
            self.Wqkv = np.asarray(Wqkv)
            self.bqkv = None if bqkv is None else np.asarray(bqkv)
            self.Wq = self.Wk = self.Wv = self.bq = self.bk = self.bv = None
            self.num_heads = _int(num_heads, "num_heads", "MultiHeadAttention", lo=1)
            self.num_kv_heads = self.num_heads if num_kv_heads is None else \
                _int(num_kv_heads, "num_kv_heads", "MultiHeadAttention", lo=1)
            # Given: Wqkv is (D, (NH + 2*Hkv)*HS), HS from its width (any D).
            self._gqa_layout = num_kv_heads is not None
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
            if num_heads is not None and _int(num_heads, "num_heads", "MultiHeadAttention") != nh:
                raise ValueError("MultiHeadAttention: num_heads=%d but Wq holds %d heads"
                                 % (num_heads, nh))
            self.num_heads = nh
            nkv = self.Wk.shape[0]
            if num_kv_heads is not None and \
                    _int(num_kv_heads, "num_kv_heads", "MultiHeadAttention") != nkv:
                raise ValueError("MultiHeadAttention: num_kv_heads=%d but Wk holds %d heads"
                                 % (num_kv_heads, nkv))
            self.num_kv_heads = nkv
        self.Wo = None if Wo is None else np.asarray(Wo)
        self.bo = None if bo is None else np.asarray(bo)
        self.causal = causal
        _causal(causal, fn="MultiHeadAttention")
        self.scale = scale
        self.dropout_p = dropout_p
        self.num_threads = num_threads
        # The model's score modifiers (checked at each call, with the shapes).
        self.window, self.softcap = window, softcap
        self.alibi_slopes = None if alibi_slopes is None else np.asarray(alibi_slopes)
        self.sinks = None if sinks is None else np.asarray(sinks)
        _modifiers("MultiHeadAttention", 1, window, softcap)

    def __repr__(self):
        form = "fused Wqkv %s" % (self.Wqkv.shape,) if self.fused else \
            "per-head Wq %s" % (self.Wq.shape,)
        kv = "" if self.num_kv_heads == self.num_heads else \
            ", num_kv_heads=%d" % self.num_kv_heads
        return "MultiHeadAttention(num_heads=%d%s, %s, Wo=%s, causal=%r)" % (
            self.num_heads, kv, form, None if self.Wo is None else self.Wo.shape, self.causal)

    def __call__(self, xq, xkv=None, *, mask=None, key_lengths=None, causal=None, scale=None,
                 dropout_p=None, seed=0, num_threads=None, algo="auto", window=None,
                 softcap=None, alibi_slopes=None, sinks=None, q_offset=None, k_offset=None):
        """mha(x) (self) or mha(xq, xkv) (cross); see the class docstring."""
        fn = "MultiHeadAttention"
        xq = np.asarray(xq)
        xkv_ = xq if xkv is None else np.asarray(xkv)
        if np.ndim(key_lengths) == 0 and key_lengths is not None:
            key_lengths = [key_lengths]
        self._check_call(fn, xq, xkv_, xkv is None, mask, key_lengths)
        B = xq.shape[0] if xq.ndim == 3 else 1
        nq, nkv = xq.shape[-2], xkv_.shape[-2]
        pick = lambda a, b: b if a is None else a  # noqa: E731  (the call's, else the module's)
        opts = dict(
            scale=pick(scale, self.scale),
            causal=_causal(pick(causal, self.causal), nq, nkv, key_lengths, fn),
            mask=mask,
            key_lengths=key_lengths,
            dropout_p=pick(dropout_p, self.dropout_p),
            seed=seed,
            num_threads=_threads(pick(num_threads, self.num_threads)),
            algo=_algo(algo),
        )
        opts.update(_modifiers(fn, B, pick(window, self.window), pick(softcap, self.softcap),
                               pick(alibi_slopes, self.alibi_slopes), pick(sinks, self.sinks),
                               q_offset, k_offset))
        if self.fused:
            if self._gqa_layout:
                opts["num_kv_heads"] = self.num_kv_heads
            return _attn.mha_fused(xq, xkv, self.Wqkv, self.bqkv, self.num_heads, self.Wo,
                                   self.bo, **opts)
        return _attn.mha(xq, xkv, self.Wq, self.Wk, self.Wv, self.bq, self.bk, self.bv, self.Wo,
                         self.bo, **opts)

    def _check_call(self, fn, xq, xkv, self_attn, mask, key_lengths):
        """The call's shapes against the weights, in the caller's terms."""
        _check_rank(fn, xq, "xq" if not self_attn else "x", 2, 3, "(Nq, D) or (B, Nq, D)")
        if not self_attn:
            _check_rank(fn, xkv, "xkv", 2, 3, "(Nkv, Dkv) or (B, Nkv, Dkv)")
            if xkv.ndim != xq.ndim or (xq.ndim == 3 and xkv.shape[0] != xq.shape[0]):
                raise ValueError("%s: xq has shape %s but xkv %s: both need the same batch"
                                 % (fn, xq.shape, xkv.shape))
        xn = "x" if self_attn else "xq"
        kvn = "x" if self_attn else "xkv"
        if self.fused:
            _check_proj(fn, xq, xn, self.Wqkv, "Wqkv", 0, "Wqkv is (D, 3*D)")
            if not self_attn:
                _check_proj(fn, xkv, kvn, self.Wqkv, "Wqkv", 0, "the fused form needs xq and "
                            "xkv of one width")
        else:
            _check_proj(fn, xq, xn, self.Wq, "Wq", 1, "Wq is (NH, Dq, HS)")
            _check_proj(fn, xkv, kvn, self.Wk, "Wk", 1, "Wk is (NH, Dkv, HS)")
            _check_proj(fn, xkv, kvn, self.Wv, "Wv", 1, "Wv is (NH, Dkv, HSv)")
        B = xq.shape[0] if xq.ndim == 3 else 1
        _check_mask(fn, mask, (B, self.num_heads, xq.shape[-2], xkv.shape[-2]))
        _check_key_lengths(fn, key_lengths, B, xkv.shape[-2])

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
        nh = _int(num_heads, "num_heads", "from_torch_state", lo=1)
        Wo = np.ascontiguousarray(st["out_proj.weight"].T)
        bo = st.get("out_proj.bias")
        bin_ = st.get("in_proj_bias")
        if "in_proj_weight" in st:
            Wqkv = np.ascontiguousarray(st["in_proj_weight"].T)
            return cls(nh, Wqkv=Wqkv, bqkv=bin_, Wo=Wo, bo=bo, **kwargs)
        Wqp, Wkp, Wvp = st["q_proj_weight"], st["k_proj_weight"], st["v_proj_weight"]
        if Wkp.shape[1] != Wvp.shape[1]:
            raise ValueError(
                "from_torch_state: k_proj_weight %s and v_proj_weight %s read inputs of "
                "different widths (kdim=%d, vdim=%d); attn's cross-attention takes keys and "
                "values from one xkv, so it needs kdim == vdim"
                % (Wkp.shape, Wvp.shape, Wkp.shape[1], Wvp.shape[1]))
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
        if self.num_kv_heads != nh:
            raise ValueError("to_torch_state: nn.MultiheadAttention has no grouped-query form "
                             "(num_kv_heads=%d, num_heads=%d)" % (self.num_kv_heads, nh))
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
