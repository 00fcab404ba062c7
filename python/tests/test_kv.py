"""attn.KVCache against NumPy: rounding bit for bit (float16 by NumPy's own
conversion, bfloat16 written here in integer ops), paged equals contiguous,
attend equals attn.sdpa over read-back copies bit for bit, a float64 einsum
oracle, mixed batches, canaries, errors."""

import numpy as np
import pytest

import attn
import numpy_ref as ref

DTYPES = ["float32", "float16", "bfloat16"]


def bf16_rne(x):
    """float32 -> bfloat16 (as float32) by round to nearest even, in integers."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def stored(x, dtype):
    """What the cache holds for float32 values x."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return bf16_rne(x)
    return x


def round_trip(bits, dtype):
    """Append float32 bit patterns as keys and read them back."""
    D = 256
    n = -(-bits.size // D)
    n = -(-n // 16) * 16
    pad = np.zeros(n * D, np.uint32)
    pad[: bits.size] = bits
    x = pad.view(np.float32).reshape(1, n, D)
    cache = attn.KVCache(n // 16, 16, 1, D, value_dim=1, dtype=dtype)
    table = np.arange(n // 16)
    cache.append(table, 0, x, np.zeros((1, n, 1), np.float32))
    k, _ = cache.read(table, n)
    return k.reshape(-1)[: bits.size]


def sweep_bits():
    """Every upper-16-bit pattern with the low bits at bfloat16's rounding
    boundaries, every 19-bit prefix at float16's, every pattern in the
    float16 subnormal range (one sign, every 7th), random patterns."""
    hi16 = np.arange(1 << 16, dtype=np.uint32) << 16
    b16 = (hi16[:, None] | np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)).ravel()
    hi19 = np.arange(1 << 19, dtype=np.uint32) << 13
    b13 = (hi19[:, None] | np.array([0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF], np.uint32)).ravel()
    sub = np.arange(101 << 23, 114 << 23, 7, dtype=np.uint32)
    rnd = np.random.default_rng(5).integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([b16, b13, sub, sub | np.uint32(0x80000000), rnd])


def test_float16_rounding_matches_numpy():
    bits = sweep_bits()
    x = bits.view(np.float32)
    got = round_trip(bits, "float16")
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).astype(np.float32)
    nan = np.isnan(x)
    assert np.isnan(got[nan]).all()
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_bfloat16_rounding_matches_integer_rne():
    bits = sweep_bits()
    x = bits.view(np.float32)
    got = round_trip(bits, "bfloat16")
    nan = np.isnan(x)
    assert np.isnan(got[nan]).all()
    want = bf16_rne(x[~nan])
    assert np.array_equal(got[~nan].view(np.uint32), want.view(np.uint32))
    # subnormals are kept, not flushed
    assert (got[(np.abs(x) < 1.1754944e-38) & (x != 0) & (np.abs(x) > 1e-40)] != 0).any()


def make_seq(rng, dtype, L, Hkv, d, dv, bs, spare=3):
    nb = -(-L // bs)
    cache = attn.KVCache(nb + spare, bs, Hkv, d, value_dim=dv, dtype=dtype)
    table = rng.permutation(nb + spare)[:nb]
    k = rng.standard_normal((Hkv, L, d)).astype(np.float32)
    v = rng.standard_normal((Hkv, L, dv)).astype(np.float32)
    p = 0
    while p < L:
        n = min(L - p, int(rng.integers(1, 90)))
        cache.append(table, p, k[:, p:p + n], v[:, p:p + n])
        p += n
    return cache, table, k, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bs", [16, 32, 256])
def test_paged_equals_contiguous(rng, dtype, bs):
    L, H, Hkv, d, dv = 700, 4, 2, 24, 20
    cache, table, k, v = make_seq(rng, dtype, L, Hkv, d, dv, bs)
    rk, rv = cache.read(table, L)
    assert np.array_equal(rk.view(np.uint32), stored(k, dtype).view(np.uint32))
    assert np.array_equal(rv.view(np.uint32), stored(v, dtype).view(np.uint32))
    for nq, causal in [(1, "none"), (37, "bottom_right")]:
        q = rng.standard_normal((1, H, nq, d)).astype(np.float32)
        out, lse = cache.attend(q, table[None], [L], causal=causal, return_lse=True,
                                num_threads=2)
        o2, l2 = attn.sdpa(q, rk[None], rv[None], causal=causal, return_lse=True, num_threads=2)
        assert np.array_equal(out.view(np.uint32), o2.view(np.uint32))
        assert np.array_equal(lse.view(np.uint32), l2.view(np.uint32))
        # and close to a float64 oracle over the stored values
        want, _, _ = ref.sdpa(q, rk[None], rv[None], causal=causal)
        assert np.abs(out - want).max() < 2e-5


def test_mixed_batch_and_q_lengths(rng):
    Hkv, H, d, bs = 2, 6, 16, 32
    lengths = [1, 333, 0, 90]
    q_lengths = [1, 9, 3, 0]
    nbs = [-(-L // bs) if L else 1 for L in lengths]
    mb = max(nbs)
    pool = sum(nbs) + 2
    cache = attn.KVCache(pool, bs, Hkv, d, dtype="bfloat16")
    ids = rng.permutation(pool)
    tables = np.zeros((4, mb), np.int32)
    o = 0
    for b, n in enumerate(nbs):
        tables[b, :n] = ids[o:o + n]
        o += n
    maxL = max(lengths)
    k = rng.standard_normal((4, Hkv, maxL, d)).astype(np.float32)
    v = rng.standard_normal((4, Hkv, maxL, d)).astype(np.float32)
    cache.append(tables, np.zeros(4, np.int64), k, v, counts=lengths)
    q = rng.standard_normal((4, H, 9, d)).astype(np.float32)
    out, lse = cache.attend(q, tables, lengths, q_lengths=q_lengths, causal="bottom_right",
                            return_lse=True)
    for b in range(4):
        nq, L = q_lengths[b], lengths[b]
        if nq and L:
            rk, rv = cache.read(tables[b], L)
            o2, l2 = attn.sdpa(q[b:b + 1, :, :nq], rk[None], rv[None], causal="bottom_right",
                               return_lse=True)
            assert np.array_equal(out[b, :, :nq], o2[0])
            assert np.array_equal(lse[b, :, :nq], l2[0])
        elif nq:
            assert (out[b, :, :nq] == 0).all() and (lse[b, :, :nq] == -np.inf).all()
        assert (out[b, :, nq:] == 0).all() and (lse[b, :, nq:] == -np.inf).all()


def test_nan_in_unused_slots_never_reaches_output(rng):
    L, bs, d = 50, 16, 8
    cache = attn.KVCache(4, bs, 1, d)
    table = np.array([2, 0, 3, 1])
    bad = np.full((1, 64, d), np.nan, np.float32)
    bad[:, 1::2] = np.inf
    cache.append(table, 0, bad, bad)
    k = rng.standard_normal((1, L, d)).astype(np.float32)
    cache.append(table, 0, k, k)
    q = rng.standard_normal((1, 2, 1, d)).astype(np.float32)
    out = cache.attend(q, table[None], [L])
    assert np.isfinite(out).all()


def test_append_touches_only_its_slots(rng):
    bs, d, pool = 16, 4, 6
    cache = attn.KVCache(pool, bs, 2, d, dtype="float16")
    everything = np.arange(pool)
    fill = np.full((2, pool * bs, d), 7.0, np.float32)
    cache.append(everything, 0, fill, fill)
    table = np.array([4, 1, 5])
    new = rng.standard_normal((2, 20, d)).astype(np.float32)
    cache.append(table, 9, new, new)
    k, v = cache.read(everything, pool * bs)
    touched = np.zeros(pool * bs, bool)
    for p in range(9, 29):
        touched[table[p // bs] * bs + p % bs] = True
    assert (k[:, ~touched] == 7.0).all() and (v[:, ~touched] == 7.0).all()
    ks, _ = cache.read(table, 29)
    assert np.array_equal(ks[:, 9:29], stored(new, "float16"))
    assert (ks[:, :9] == 7.0).all()


def test_copy_blocks_and_shared_prefix(rng):
    cache = attn.KVCache(4, 16, 1, 4)
    x = rng.standard_normal((1, 10, 4)).astype(np.float32)
    cache.append([0, 1], 0, x, x)
    a, _ = cache.read([0], 10)
    cache.copy_blocks([0], [2])   # b takes its own copy of the shared block
    y = rng.standard_normal((1, 1, 4)).astype(np.float32)
    cache.append([2], 10, y, y)   # b appends into its copy
    a2, _ = cache.read([0], 11)
    b2, _ = cache.read([2], 11)
    assert np.array_equal(a2[:, :10], a) and np.array_equal(b2[:, :10], a)
    assert np.array_equal(b2[:, 10], y[:, 0]) and not np.array_equal(a2[:, 10], y[:, 0])


def test_errors():
    cache = attn.KVCache(4, 16, 2, 8, dtype="bfloat16")
    q = np.zeros((1, 4, 1, 8), np.float32)
    with pytest.raises(ValueError, match=r"block_tables\[0\]\[1\]=9"):
        cache.attend(q, [[0, 9]], [20])
    with pytest.raises(ValueError, match="key_lengths"):
        cache.attend(q, [[0, 1]], [20], key_lengths=[3])
    with pytest.raises(ValueError, match="capacity"):
        cache.append([0, 1], 30, np.zeros((2, 3, 8)), np.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match="block_size=24"):
        attn.KVCache(4, 24, 2, 8)
    with pytest.raises(ValueError, match="dtype"):
        attn.KVCache(4, 16, 2, 8, dtype="int8")
    with pytest.raises(ValueError, match=r"k.shape\[3\]"):
        cache.append([0], 0, np.zeros((2, 1, 7)), np.zeros((2, 1, 8)))
    with pytest.raises(ValueError, match="int32"):
        cache.read([2 ** 40], 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_modifiers_and_dropped_blocks(rng, dtype):
    L, H, Hkv, d, bs = 300, 4, 2, 32, 16
    cache, table, _, _ = make_seq(rng, dtype, L, Hkv, d, d, bs, spare=1)
    zero_block = next(i for i in range(cache.num_blocks) if i not in set(table.tolist()))
    q = rng.standard_normal((1, H, 5, d)).astype(np.float32)
    # sliding window: blocks wholly behind every query's window dropped (-1)
    first = (L - 5 - 40) // bs
    dropped, zeroed = table.copy(), table.copy()
    dropped[:first], zeroed[:first] = -1, zero_block
    rk, rv = cache.read(zeroed, L)
    out, lse = cache.attend(q, dropped[None], [L], causal="bottom_right", window=(40, None),
                            return_lse=True)
    o2, l2 = attn.sdpa(q, rk[None], rv[None], causal="bottom_right", window=(40, None),
                       return_lse=True)
    assert np.array_equal(out, o2) and np.array_equal(lse, l2)
    with pytest.raises(ValueError, match="a query sees that block"):
        cache.attend(q, dropped[None], [L], causal="bottom_right", window=(60, None))
    # softcap, ALiBi, sinks, explicit positions
    rk, rv = cache.read(table, L)
    kw = dict(softcap=5.0, alibi_slopes=attn.alibi_slopes(H), sinks=[0.5, -1.0, 2.0, 0.0],
              q_offset=L - 12, k_offset=3, causal="bottom_right")
    out = cache.attend(q, table[None], [L], **kw)
    assert np.array_equal(out, attn.sdpa(q, rk[None], rv[None], **kw))
