"""Score modifiers through the Python binding (issue 13, point 3): sdpa and
MultiHeadAttention take window, softcap, alibi_slopes, sinks, q_offset and
k_offset, checked against an independent float64 NumPy formulation that
builds the full score matrix in design.md's order: scale -> softcap -> ALiBi
-> mask, the sink an extra logit in the denominator only. (The C library's
numerics on every path and ISA are tests/test_modifiers.c.)"""
import itertools

import numpy as np
import pytest

import attn
from modifiers_ref import alibi_slopes_ref, ref
from numpy_ref import close, randn, weights


def qkv(rng, B=2, H=4, Hkv=2, Nq=3, Nkv=8, d=8, dv=5):
    return randn(rng, B, H, Nq, d), randn(rng, B, Hkv, Nkv, d), randn(rng, B, Hkv, Nkv, dv)


def check(q, k, v, algo="auto", **kw):
    out, lse = attn.sdpa(q, k, v, return_lse=True, algo=algo, **kw)
    want, want_lse = ref(q, k, v, **kw)
    close(out, want)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-5, atol=1e-5)
    return out, lse


W = 3


@pytest.mark.parametrize("left,right", list(itertools.product([-1, 0, 1, W - 1, W, W + 1],
                                                              [-1, 0, 1, W])))
@pytest.mark.parametrize("Nq,extra", [(1, 0), (3, 0), (3, 5)])
def test_window_sweep(rng, left, right, Nq, extra):
    q, k, v = qkv(rng, Nq=Nq, Nkv=Nq + extra)
    for causal in ("none", "top_left", "bottom_right"):
        check(q, k, v, causal=causal, window=(left, right))
    check(q, k, v, causal="bottom_right", window=(left, right), key_lengths=[Nq + extra, Nq],
          algo="reference")
    check(q, k, v, window=(left, right), q_offset=[2, -1], k_offset=1)


def test_window_none_sides_and_no_window_agree(rng):
    q, k, v = qkv(rng, Nq=6, Nkv=6)
    base = attn.sdpa(q, k, v, causal="top_left")
    for w in (None, (None, None), (-1, -1), (None, -1)):  # no window at all: the same call
        np.testing.assert_array_equal(attn.sdpa(q, k, v, causal="top_left", window=w), base)
    # A window wider than the sequence sees every key the causal rule does.
    ref_base = attn.sdpa(q, k, v, causal="top_left", algo="reference")
    for w in ((5, None), (100, 100)):
        np.testing.assert_array_equal(
            attn.sdpa(q, k, v, causal="top_left", window=w, algo="reference"), ref_base)
        close(attn.sdpa(q, k, v, causal="top_left", window=w), base, rtol=1e-6, atol=1e-6)


def test_sliding_window_sees_exactly_s_keys(rng):
    S, N = 4, 12
    q, k = randn(rng, 1, 1, N, 8), randn(rng, 1, 1, N, 8)
    v = np.broadcast_to(np.eye(N), (1, 1, N, N))  # out = the weights
    w = attn.sdpa(q, k, v, causal="top_left", window=(S - 1, None))[0, 0]
    counts = (w > 0).sum(-1)
    assert list(counts) == [min(i + 1, S) for i in range(N)]


def test_decode_sees_the_newest_keys(rng):
    q, k, v = qkv(rng, Nq=1, Nkv=20)
    out, _ = check(q, k, v, window=(4, None))
    want = attn.sdpa(q, k[:, :, -5:], v[:, :, -5:])
    close(out, want)


@pytest.mark.parametrize("cap", [1.0, 30.0])
def test_softcap_with_masked_keys_does_not_leak(rng, cap):
    q, k, v = qkv(rng)
    q = q * 10
    mask = np.zeros((3, 8))
    mask[:, 5:] = -np.inf
    out, _ = check(q, k, v, softcap=cap, mask=mask)
    close(out, attn.sdpa(q, k[:, :, :5], v[:, :, :5], softcap=cap))


def test_alibi_slopes_follow_the_paper():
    for H in range(1, 65):
        want = alibi_slopes_ref(H)
        got = attn.alibi_slopes(H)
        assert got.dtype == np.float32 and got.shape == (H,)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="H=0"):
        attn.alibi_slopes(0)
    with pytest.raises(TypeError):
        attn.alibi_slopes(2.0)


@pytest.mark.parametrize("causal", ["none", "bottom_right"])
def test_alibi_bottom_right_and_sign(rng, causal):
    q, k, v = qkv(rng, Nq=3, Nkv=9)
    slopes = attn.alibi_slopes(4)
    check(q, k, v, causal=causal, alibi_slopes=slopes)
    # The bias lowers far keys: with q = 0 every score is -slope*|dist|, so
    # the nearest key (the last, at bottom-right alignment) weighs most.
    qz = np.zeros_like(q)
    eye = np.broadcast_to(np.eye(9), (2, 2, 9, 9))
    w = attn.sdpa(qz, k, eye, causal=causal, alibi_slopes=slopes)
    assert np.all(np.argmax(w, axis=-1) == np.arange(6, 9))


@pytest.mark.parametrize("s", [-30.0, 0.0, 2.5, 30.0])
def test_sinks(rng, s):
    q, k, v = qkv(rng)
    sinks = np.array([s, -s, 0.5, s / 2])
    check(q, k, v, sinks=sinks)
    check(q, k, v, sinks=sinks, causal="bottom_right", algo="reference")


def test_fully_masked_row_with_a_sink(rng):
    q, k, v = qkv(rng)
    sinks = np.array([1.0, -2.0, 0.0, 3.0])
    out, lse = attn.sdpa(q, k, v, sinks=sinks, key_lengths=[0, 8], return_lse=True)
    assert np.all(out[0] == 0.0)
    np.testing.assert_array_equal(lse[0], np.broadcast_to(sinks[:, None].astype(np.float32),
                                                          (4, 3)))


def test_sinks_equal_one_more_merged_part(rng):
    q, k, v = qkv(rng)
    sinks = np.array([1.0, -2.0, 0.0, 3.0])
    out, lse = attn.sdpa(q, k, v, return_lse=True)
    sink_lse = np.broadcast_to(sinks[None, :, None], lse.shape).astype(np.float32)
    mo, ml = attn.merge([out, np.zeros_like(out)], [lse, sink_lse])
    got, got_lse = attn.sdpa(q, k, v, sinks=sinks, return_lse=True)
    close(got, mo, rtol=1e-5, atol=1e-6)
    close(got_lse, ml, rtol=1e-5, atol=1e-6)


def test_every_modifier_at_once(rng):
    q, k, v = qkv(rng, Nq=5, Nkv=11)
    mask = randn(rng, 5, 11) * 0.3
    mask[2, 4] = -np.inf
    kw = dict(causal="bottom_right", window=(4, 1), softcap=5.0,
              alibi_slopes=attn.alibi_slopes(4), sinks=[0.5, -1.0, 2.0, 0.0], mask=mask,
              key_lengths=[11, 9], scale=0.4)
    check(q, k, v, **kw)
    check(q, k, v, algo="reference", **kw)
    check(q, k, v, q_offset=3, k_offset=-2, **kw)
    # Threads do not change a bit.
    np.testing.assert_array_equal(attn.sdpa(q, k, v, num_threads=1, **kw),
                                  attn.sdpa(q, k, v, num_threads=2, **kw))


def test_float32_and_lower_ranks(rng):
    q, k, v = (a[0, 0].astype(np.float32) for a in qkv(rng, Nq=4, Nkv=6))
    got = attn.sdpa(q, k, v, window=(1, 1), softcap=2.0, alibi_slopes=[0.5], sinks=[0.0])
    assert got.dtype == np.float32 and got.shape == (4, 5)
    want, _ = ref(q[None, None], k[None, None], v[None, None], window=(1, 1), softcap=2.0,
                  alibi_slopes=[0.5], sinks=[0.0])
    close(got, want[0, 0])


def test_multihead_attention_passes_modifiers(rng):
    NH, D, N = 2, 8, 7
    W = weights(rng, D, D, 3 * D)
    x = randn(rng, 2, N, D)
    kw = dict(window=(2, 0), softcap=4.0, alibi_slopes=attn.alibi_slopes(NH), sinks=[0.3, -0.2])
    m = attn.MultiHeadAttention(NH, Wqkv=W, causal="top_left", **kw)
    HS = D // NH
    q, k, v = (np.einsum("bnd,de->bne", x, W[:, t * D:(t + 1) * D])
               .reshape(2, N, NH, HS).transpose(0, 2, 1, 3) for t in range(3))
    want, _ = ref(q, k, v, causal="top_left", **kw)
    want = want.transpose(0, 2, 1, 3).reshape(2, N, D)
    close(m(x), want)
    # Per call: overrides and positions.
    want2, _ = ref(q, k, v, causal="top_left", q_offset=[1, 4], k_offset=2,
                   **dict(kw, softcap=None))
    close(m(x, softcap=0.0, q_offset=[1, 4], k_offset=2),
          want2.transpose(0, 2, 1, 3).reshape(2, N, D))
    Wq, Wk, Wv = (W[:, t * D:(t + 1) * D].reshape(D, NH, HS).transpose(1, 0, 2)
                  for t in range(3))
    per_head = attn.MultiHeadAttention(Wq=Wq, Wk=Wk, Wv=Wv, causal="top_left", **kw)
    close(per_head(x), want)


@pytest.mark.parametrize("kw,err,match", [
    (dict(window=(-2, 0)), ValueError, r"window=\(-2, 0\): the left side"),
    (dict(window=(1.5, 0)), TypeError, "window's left side must be an integer"),
    (dict(window=3), TypeError, r"window must be \(left, right\)"),
    (dict(softcap=-1.0), ValueError, r"softcap=-1.0 must be finite and >= 0"),
    (dict(softcap=float("nan")), ValueError, "softcap=nan"),
    (dict(alibi_slopes=[0.5, 0.25]), ValueError, "alibi_slopes holds 2 values but there are 4"),
    (dict(alibi_slopes=[0.5, np.inf, 0, 0]), ValueError, r"alibi_slopes\[1\]=inf must be finite"),
    (dict(sinks=[0, 0, np.nan, 0]), ValueError, r"sinks\[2\]=nan must be finite"),
    (dict(sinks=np.zeros((2, 2))), ValueError, "sinks has shape"),
    (dict(q_offset=[1, 2, 3]), ValueError, "q_offset must hold 2 values"),
    (dict(q_offset=1.5), TypeError, "q_offset must be an integer"),
    (dict(k_offset="1"), TypeError, "k_offset must be an integer"),
])
def test_invalid_modifiers_name_the_argument(rng, kw, err, match):
    q, k, v = qkv(rng)
    with pytest.raises(err, match=match):
        attn.sdpa(q, k, v, **kw)


def test_modifier_tables_are_read_whatever_their_strides(rng):
    q, k, v = qkv(rng)
    slopes = np.zeros(8)
    slopes[::2] = attn.alibi_slopes(4)
    check(q, k, v, alibi_slopes=slopes[::2])
    check(q, k, v, sinks=np.arange(8.0)[::-2][:4])
