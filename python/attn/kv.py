"""The paged KV cache for decoding: attn.KVCache (attn_kv_* in attn.h)."""

import numpy as np

from ._convert import _algo, _attn, _causal, _modifiers, _threads
from .decoder import rope as _rope

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _dtype_name(dtype):
    if isinstance(dtype, str) and dtype in _DTYPES:
        return dtype
    try:
        if np.dtype(dtype) == np.float32:
            return "float32"
        if np.dtype(dtype) == np.float16:
            return "float16"
    except TypeError:
        pass
    raise ValueError("KVCache: dtype must be 'float32', 'float16' or 'bfloat16'; got %r" % (dtype,))


def _table2(t, name):
    t = np.asarray(t)
    if t.ndim != 2:
        raise ValueError("%s must be (B, max_blocks), got shape %s" % (name, t.shape))
    if t.shape[1] < 1:
        raise ValueError("%s must have at least one column" % name)
    return t.reshape(-1), t.shape[1]


class KVCache:
    """A pool of num_blocks blocks, each holding block_size token positions
    (a multiple of 16) of keys (num_kv_heads, head_dim) and values
    (num_kv_heads, value_dim), stored as dtype "float32", "float16" or
    "bfloat16" (appends round to nearest even, subnormals kept; reads are
    exact). A sequence is a block table (int block ids, any order, owned by
    you) plus a length: position p lives in block table[p // block_size].
    Tables may share blocks (a common prefix); appending into a shared block
    changes every sequence holding it, so copy_blocks first.

        cache = attn.KVCache(64, 16, num_kv_heads=2, head_dim=64)
        cache.append(table, 0, k, v)          # k (Hkv, n, d), v (Hkv, n, dv)
        out = cache.attend(q, [table], [n])   # q (B, H, Nq, d)

    attend(...) equals attn.sdpa over float32 copies of what the cache holds
    (read()), bit for bit.
    """

    def __init__(self, num_blocks, block_size, num_kv_heads, head_dim, value_dim=None,
                 dtype="float32"):
        self.dtype = _dtype_name(dtype)
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.value_dim = head_dim if value_dim is None else value_dim
        self._h = _attn.kv_create(num_blocks, block_size, num_kv_heads, head_dim, value_dim,
                                  self.dtype)

    def append(self, block_table, start, k, v, counts=None, rope=None):
        """Write new keys and values at positions start..start+n-1.

        One sequence: block_table (max_blocks,), start an int, k (Hkv, n, d),
        v (Hkv, n, dv). B sequences at once: block_tables (B, max_blocks),
        starts (B,), k (B, Hkv, n, d), v (B, Hkv, n, dv), and optionally
        counts (B,) in 0..n: sequence b appends its first counts[b] tokens.
        Nothing else in the pool changes; a failed call changes nothing.

        rope: None, or a dict of attn.rope's keywords (style, rotary_dim,
        base, inv_freq, mscale): the keys are stored rotated at their
        positions start + t, as attn_kv_append_rope does (k is not modified).
        """
        if rope is not None:
            k = np.asarray(k)
            st = np.atleast_1d(np.asarray(start, dtype=np.int64))
            n = k.shape[-2]
            pos = st.reshape((-1,) + (1,) * (k.ndim - 2)) + np.arange(n)
            k = _rope(k, pos if k.ndim == 4 else pos[0], **rope)
        if np.ndim(block_table) == 1:
            if counts is not None:
                raise ValueError("KVCache.append: counts= goes with the batched form")
            k, v = np.asarray(k), np.asarray(v)
            if k.ndim != 3 or v.ndim != 3:
                raise ValueError("KVCache.append: one sequence takes k (Hkv, n, d) and "
                                 "v (Hkv, n, dv), got shapes %s and %s" % (k.shape, v.shape))
            block_table = np.asarray(block_table)[None, :]
            start = [start]
            k, v = k[None], v[None]
        flat, mb = _table2(block_table, "block_tables")
        _attn.kv_append(self._h, flat, mb, np.atleast_1d(start), k, v, counts)

    def read(self, block_table, length):
        """Positions 0..length-1 of one sequence as float32 (exact):
        returns (k (Hkv, length, d), v (Hkv, length, dv))."""
        return _attn.kv_read(self._h, np.atleast_1d(block_table), length, self.num_kv_heads,
                             self.head_dim, self.value_dim)

    def copy_blocks(self, src, dst):
        """Block dst[i] becomes a copy of block src[i], for i ascending."""
        _attn.kv_copy_blocks(self._h, np.atleast_1d(src), np.atleast_1d(dst))

    def attend(self, q, block_tables, lengths, *, q_lengths=None, scale=None, causal="none",
               mask=None, key_lengths=None, return_lse=False, num_threads=None, algo="auto",
               dropout_p=0.0, seed=0, window=None, softcap=None, alibi_slopes=None, sinks=None,
               q_offset=None, k_offset=None):
        """Attention of B sequences over the cache (decode rows and prefill
        chunks in one batch).

            q (B, H, Nq, d); block_tables (B, max_blocks); lengths (B,):
            sequence b holds keys 0..lengths[b]-1; q_lengths (B,) in 0..Nq
            or None: sequence b's queries are q[b, :, :q_lengths[b]] (its
            other rows come back as zeros, lse -inf) -> out (B, H, Nq, dv)

        causal="bottom_right" puts query i at position L_b - nq_b + i (append
        the chunk first, then attend). mask broadcasts to (B, H, Nq,
        max(lengths)). Options as attn.sdpa, the score modifiers included
        (window=(left, right), softcap, alibi_slopes, sinks, q_offset,
        k_offset); key_lengths= is refused (lengths is the one length), and
        so is dropout. A windowed cache may hold -1 in its tables for blocks
        no query's window reaches. Returns out, or (out, lse) with
        return_lse=True.
        """
        if key_lengths is not None:
            raise ValueError("KVCache.attend: key_lengths= is not accepted: lengths gives each "
                             "sequence's length")
        q = np.asarray(q)
        if q.ndim != 4:
            raise ValueError("KVCache.attend: q must be (B, H, Nq, d), got shape %s" % (q.shape,))
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim < 4:
                mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
        flat, mb = _table2(block_tables, "block_tables")
        mods = _modifiers("KVCache.attend", q.shape[0], window, softcap, alibi_slopes, sinks,
                          q_offset, k_offset)
        out, lse = _attn.kv_attend(self._h, q, flat, mb, np.atleast_1d(lengths), q_lengths,
                                   self.value_dim, scale, _causal(causal, fn="KVCache.attend"),
                                   mask, None, dropout_p, seed, _threads(num_threads), _algo(algo),
                                   want_lse=bool(return_lse), **mods)
        return (out, lse) if return_lse else out
