"""Array handling: strides, dtypes, errors, Python threads, the GIL.
Tolerances: see numpy_ref.py (rtol 1e-4, atol 2e-5)."""

import threading
import time

import numpy as np
import pytest

import attn
import numpy_ref
from numpy_ref import close, randn, weights


def qkv(rng, B=2, H=4, Hkv=2, Nq=9, Nkv=13, d=8, dv=6, dtype=np.float32):
    return (randn(rng, B, H, Nq, d, dtype=dtype), randn(rng, B, Hkv, Nkv, d, dtype=dtype),
            randn(rng, B, Hkv, Nkv, dv, dtype=dtype))


# --------------------------------------------------------------------------
# Strides
# --------------------------------------------------------------------------


def test_transposed_sliced_negative_and_zero_strides(rng):
    q, k, v = qkv(rng)
    ref = numpy_ref.sdpa(q, k, v)[0]
    # q stored as (B, Nq, H, d) and read through a transpose
    q_t = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    # k with every other element of a bigger buffer
    k_big = np.zeros(k.shape[:-1] + (2 * k.shape[-1],), np.float32)
    k_big[..., ::2] = k
    k_s = k_big[..., ::2]
    # v reversed in memory, read with negative strides
    v_r = np.ascontiguousarray(v[:, :, ::-1, ::-1])[:, :, ::-1, ::-1]
    assert not q_t.flags.c_contiguous and not k_s.flags.c_contiguous
    assert v_r.strides[-1] < 0
    close(attn.sdpa(q_t, k_s, v_r), ref)
    # stride 0: one kv sequence broadcast over the batch
    k0 = np.broadcast_to(k[:1], k.shape)
    v0 = np.broadcast_to(v[:1], v.shape)
    close(attn.sdpa(q, k0, v0), numpy_ref.sdpa(q, np.array(k0), np.array(v0))[0])


def test_strided_module_inputs(rng):
    x = randn(rng, 3, 11, 16, dtype=np.float32)
    W = weights(rng, 16, 16, 48, dtype=np.float32)
    Wp = weights(rng, 16, 16, 16, dtype=np.float32)
    ref = attn.multihead_attention_vec(x, W, 4, Wp)
    x_t = np.ascontiguousarray(x.transpose(2, 0, 1)).transpose(1, 2, 0)  # last stride != 1
    W_f = np.asfortranarray(W)
    Wp_r = np.ascontiguousarray(Wp[::-1])[::-1]
    close(attn.multihead_attention_vec(x_t, W_f, 4, Wp_r), ref, atol=1e-5)
    close(attn.multihead_attention_vec(x[:, ::-1], W, 4, Wp), attn.multihead_attention_vec(
        np.ascontiguousarray(x[:, ::-1]), W, 4, Wp), atol=1e-5)
    xs = randn(rng, 20, 16, dtype=np.float32)[::2]  # row stride 2 rows
    Wk, Wq, Wv = (weights(rng, 16, 16, 4, dtype=np.float32) for _ in range(3))
    close(attn.self_attention(xs, Wk, Wq, Wv),
          attn.self_attention(np.ascontiguousarray(xs), Wk, Wq, Wv), atol=1e-5)


def test_byte_strides_misaligned_and_byteswapped(rng):
    q, k, v = qkv(rng, B=1, H=2, Hkv=2, Nq=5, Nkv=6, d=4, dv=4)
    ref = numpy_ref.sdpa(q, k, v)[0]
    # strides of 5 bytes: a field of a packed record array
    rec = np.zeros(q.size, dtype=[("f", "<f4"), ("pad", "i1")])
    rec["f"] = q.reshape(-1)
    q5 = rec["f"].reshape(q.shape)
    assert q5.strides[-1] == 5
    # misaligned: float32 data starting at an odd address
    buf = np.zeros(k.nbytes + 1, np.uint8)
    k_mis = buf[1:].view(np.float32).reshape(k.shape)
    k_mis[...] = k
    assert not k_mis.flags.aligned
    # big-endian
    v_be = v.astype(">f4")
    out = attn.sdpa(q5, k_mis, v_be)
    assert out.dtype == np.float32
    close(out, ref)


def test_read_only_inputs_are_not_modified(rng):
    q, k, v = qkv(rng)
    for a in (q, k, v):
        a.setflags(write=False)
    copies = [a.copy() for a in (q, k, v)]
    attn.sdpa(q, k, v, causal="top_left")
    for a, c in zip((q, k, v), copies):
        np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------
# Dtypes
# --------------------------------------------------------------------------


def test_result_dtype_follows_inputs(rng):
    q, k, v = qkv(rng)
    assert attn.sdpa(q, k, v).dtype == np.float32
    assert attn.sdpa(q.astype(np.float64), k, v).dtype == np.float64
    o64 = attn.sdpa(*(a.astype(np.float64) for a in (q, k, v)))
    assert o64.dtype == np.float64
    close(o64, attn.sdpa(q, k, v), rtol=0, atol=1e-6)
    # a float64 mask (np.where gives one) does not change the result dtype
    mask = np.where(np.tri(9, 13, 4) > 0, 0.0, -np.inf)
    assert mask.dtype == np.float64
    assert attn.sdpa(q, k, v, mask=mask).dtype == np.float32
    out, lse, w = attn.sdpa(q, k, v.astype(np.float64), return_lse=True, return_weights=True)
    assert out.dtype == lse.dtype == w.dtype == np.float64
    x = randn(rng, 2, 5, 8, dtype=np.float32)
    Ws = [weights(rng, 8, 8, 4) for _ in range(3)]  # float64
    assert attn.self_attention_batched(x, *Ws).dtype == np.float64
    assert attn.softmax_lastdim(x).dtype == np.float32
    assert attn.layer_norm(x, np.ones(8)).dtype == np.float64
    assert attn.linear(x, Ws[0].astype(np.float32)).dtype == np.float32


def test_float64_is_computed_in_float32(rng):
    """The documented conversion: float64 inputs are rounded to float32, the
    float32 result is widened; bit for bit the same as converting by hand."""
    q, k, v = qkv(rng, dtype=np.float64)
    by_hand = attn.sdpa(*(a.astype(np.float32) for a in (q, k, v))).astype(np.float64)
    np.testing.assert_array_equal(attn.sdpa(q, k, v), by_hand)
    x = randn(rng, 3, 7, 5)
    np.testing.assert_array_equal(attn.softmax_cols(x),
                                  attn.softmax_cols(x.astype(np.float32)).astype(np.float64))


def test_lists_accepted(rng):
    x = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
    close(attn.softmax_lastdim(x), numpy_ref.softmax(np.array(x)))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.float16, np.complex64])
def test_non_float_types_raise_type_error(rng, dtype):
    q, k, v = qkv(rng)
    bad = np.ones(q.shape, dtype)
    with pytest.raises(TypeError, match="float32 or float64"):
        attn.sdpa(bad, k, v)
    with pytest.raises(TypeError):
        attn.softmax_lastdim(np.ones((3, 4), dtype))
    with pytest.raises(TypeError):
        attn.self_attention(np.ones((3, 4), dtype), *(np.ones((4, 2)),) * 3)
    with pytest.raises(TypeError):
        attn.softmax_cols(np.ones((3, 4), dtype))
    with pytest.raises(TypeError):
        attn.multihead_attention_vec(np.ones((1, 3, 4), dtype), np.ones((4, 12)), 2,
                                     np.ones((4, 4)))


def test_boolean_mask_refused_with_advice(rng):
    q, k, v = qkv(rng)
    keep = np.ones((9, 13), bool)
    with pytest.raises(TypeError, match=r"np\.where\(keep, 0"):
        attn.sdpa(q, k, v, mask=keep)
    m = attn.MultiHeadAttention(Wq=np.ones((1, 4, 2)), Wk=np.ones((1, 4, 2)),
                                Wv=np.ones((1, 4, 2)))
    with pytest.raises(TypeError, match="-np.inf"):
        m(np.ones((3, 4)), mask=np.ones((3, 3), bool))
    with pytest.raises(TypeError, match="integers"):
        attn.sdpa(q, k, v, key_lengths=np.array([1.5, 2.0]))


# --------------------------------------------------------------------------
# Shape errors name the argument, axis and value as the caller passed them
# --------------------------------------------------------------------------


def test_shape_errors(rng):
    q, k, v = qkv(rng)
    with pytest.raises(ValueError, match=r"sdpa: k\.shape\[3\]=5 but q\.shape\[3\]=8"):
        attn.sdpa(q, k[..., :5], v)
    with pytest.raises(ValueError, match=r"3 heads \(axis 1\).*2 heads"):
        attn.sdpa(q[:, :3], k, v)  # 3 query heads, 2 kv heads
    with pytest.raises(ValueError, match=r"v\.shape\[2\]=7 but k\.shape\[2\]=13"):
        attn.sdpa(q, k, v[:, :, :7])  # Nkv disagree
    with pytest.raises(ValueError, match="key_lengths"):
        attn.sdpa(q, k, v, key_lengths=[1, 2, 3])  # B = 2
    with pytest.raises(ValueError, match=r"key_lengths\[1\]=14 but must be in 0..Nkv=13"):
        attn.sdpa(q, k, v, key_lengths=[1, 14])  # > Nkv
    with pytest.raises(ValueError, match=r"dropout_p=1\.0 must be in \[0, 1\)"):
        attn.sdpa(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 9, 13\): axis 0 is 3 but must "
                       r"be 1 or H=4"):
        attn.sdpa(q, k, v, mask=np.zeros((3, 9, 13)))  # 3 is neither H=4 nor 1
    with pytest.raises(ValueError, match="causal"):
        attn.sdpa(q, k, v, causal="lower")
    with pytest.raises(ValueError, match="rank"):
        attn.sdpa(q[None], k[None], v[None])
    with pytest.raises(ValueError):
        attn.sdpa(q, k, v, num_threads=-1)
    x = randn(rng, 2, 5, 12)
    with pytest.raises(ValueError, match=r"NH=5 heads do not divide the width D=12"):
        attn.multihead_attention_vec(x, weights(rng, 12, 12, 36), 5, np.eye(12))  # 12 % 5
    with pytest.raises(ValueError):
        attn.multihead_attention_vec(x, weights(rng, 12, 12, 35), 4, np.eye(12))
    with pytest.raises(ValueError, match=r"Wp has shape \(5, 12\): axis 0 must be NH\*HS = 2\*3"):
        attn.multihead_attention_list(x, [np.ones((12, 3))] * 2, [np.ones((12, 3))] * 2,
                                      [np.ones((12, 3))] * 2, np.ones((5, 12)))  # Wp rows != 6
    with pytest.raises(ValueError, match=r"Wk has shape \(11, 3\): axis 0 must be x's width 12"):
        attn.self_attention(x[0], np.ones((11, 3)), np.ones((12, 3)), np.ones((12, 3)))
    with pytest.raises(ValueError):
        attn.softmax_lastdim(np.float64(3.0))
    with pytest.raises(ValueError, match="attn_"):
        attn.softmax_lastdim(np.zeros((3, 0)))
    with pytest.raises(ValueError, match=r"linear: W has shape \(5, 2\): axis 0 must be x's "
                       r"width 4 \(x\.shape\[1\]\)"):
        attn.linear(np.ones((3, 4)), np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"x\.shape\[3\]"):  # not the reshaped (-1, 4)
        attn.linear(np.ones((2, 3, 3, 4)), np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"layer_norm: gamma has shape \(5,\) but must be "
                       r"\(4,\)"):
        attn.layer_norm(np.ones((3, 4)), np.ones(5))
    with pytest.raises(ValueError):
        attn.self_attention_cols(np.ones((4, 3)), *(np.ones((2, 4)),) * 3, *(np.ones((2, 2)),) * 3)
    q2, k2, v2 = qkv(rng, B=1, H=1, Hkv=1, Nq=2, Nkv=3)
    o, l = attn.sdpa(q2, k2, v2, return_lse=True)
    with pytest.raises(ValueError, match=r"merge: outs\[1\] has shape"):
        attn.merge([o, o[..., :3]], [l, l])
    with pytest.raises(ValueError, match="attn_merge"):  # the C library's own check
        attn._attn.merge([o, o[..., :3]], [l, l])
    with pytest.raises(ValueError):
        attn.merge([o], [l, l])


# --------------------------------------------------------------------------
# Python threads and the GIL
# --------------------------------------------------------------------------


def test_calls_from_many_python_threads(rng):
    cases = [qkv(rng, B=2, H=4, Hkv=2, Nq=40 + i, Nkv=50 + 3 * i, d=16, dv=16)
             for i in range(6)]
    Wfused = weights(rng, 32, 32, 96, dtype=np.float32)
    Wp = weights(rng, 32, 32, 32, dtype=np.float32)
    xs = [randn(rng, 2, 17 + i, 32, dtype=np.float32) for i in range(6)]
    expect_sdpa = [attn.sdpa(*c, causal="top_left") for c in cases]
    expect_mha = [attn.multihead_attention_vec(x, Wfused, 4, Wp, True) for x in xs]
    errors = []
    barrier = threading.Barrier(6)

    def work(i):
        try:
            barrier.wait()
            for _ in range(10):
                np.testing.assert_array_equal(attn.sdpa(*cases[i], causal="top_left"),
                                              expect_sdpa[i])
                close(attn.multihead_attention_vec(xs[i], Wfused, 4, Wp, True), expect_mha[i],
                      rtol=0, atol=1e-6)
                # The C library's thread-local message, raised in this thread
                # (the binding called directly: attn.sdpa checks shapes first).
                q4, k4, v4 = (np.asarray(a).reshape((1,) * (4 - np.ndim(a)) + np.shape(a))
                              for a in cases[i])
                with pytest.raises(ValueError, match=r"attn_sdpa: k\.shape\[3\]=3"):
                    attn._attn.sdpa(q4, k4[..., :3], v4)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_gil_released_during_computation(rng):
    """While one thread computes in C, another Python thread keeps running."""
    q, k, v = qkv(rng, B=1, H=8, Hkv=8, Nq=512, Nkv=512, d=64, dv=64)
    attn.sdpa(q, k, v, num_threads=1, algo="reference")
    t0 = time.perf_counter()
    attn.sdpa(q, k, v, num_threads=1, algo="reference")
    one = time.perf_counter() - t0
    reps = max(1, int(0.3 / max(one, 1e-4)))
    span = {}

    def work():
        span["start"] = time.perf_counter()
        for _ in range(reps):
            attn.sdpa(q, k, v, num_threads=1, algo="reference")
        span["end"] = time.perf_counter()

    t = threading.Thread(target=work)
    stamps = []
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    inside = [s for s in stamps if span["start"] <= s <= span["end"]]
    duration = span["end"] - span["start"]
    # with the GIL held, the main thread would stall for a whole call
    # ("one" seconds at least); released, it ticks all along
    assert len(inside) > 100
    gaps = np.diff([span["start"]] + inside + [span["end"]])
    assert gaps.max() < max(0.5 * duration, 0.05), (gaps.max(), duration, one)
