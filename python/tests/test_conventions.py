"""Errors in the user's terms and no silent coercion (issue 9, items 10-13):
messages name the argument, the axis and the value as the caller passed
them; numbers are never truncated or wrapped; one causal rule shared with the
CLI; masks broadcast like NumPy; from_torch_state refuses modules attn could
never call."""
import numpy as np
import pytest

import attn
from numpy_ref import close, randn, sdpa as sdpa_ref, weights


# ---- 10: messages in the caller's shapes and names ---------------------------------


def test_mask_axis_named_in_the_callers_rank(rng):
    q, k = randn(rng, 4, 8), randn(rng, 5, 8)
    with pytest.raises(ValueError, match=r"mask has shape \(4, 6\): axis 1 is 6 but must be 1 "
                                         r"or Nkv=5"):
        attn.sdpa(q, k, k, mask=np.zeros((4, 6)))


def test_heads_named_as_the_caller_gave_them(rng):
    q, k = randn(rng, 2, 3), randn(rng, 2, 2, 3)
    with pytest.raises(ValueError, match=r"q has shape \(2, 3\), 1 head \(no head axis\), but k "
                                         r"has shape \(2, 2, 3\), 2 heads \(axis 0\)"):
        attn.sdpa(q, k, k)


def test_merge_names_outs_and_lses(rng):
    q, k = randn(rng, 1, 1, 2, 4), randn(rng, 1, 1, 3, 4)
    o, l = attn.sdpa(q, k, k, return_lse=True)
    with pytest.raises(ValueError, match=r"lses\[1\] has shape \(1, 1, 3\) but must be "
                                         r"\(1, 1, 2\)"):
        attn.merge([o, o], [l, np.zeros((1, 1, 3))])
    with pytest.raises(ValueError, match="2 arrays in outs but 1 in lses"):
        attn.merge([o, o], [l])


def test_single_head_weight_named_with_its_own_shape(rng):
    x = randn(rng, 6, 8)
    with pytest.raises(ValueError, match=r"self_attention: Wq has shape \(5, 4\): axis 0 must be "
                                         r"x's width 8"):
        attn.self_attention(x, randn(rng, 8, 4), randn(rng, 5, 4), randn(rng, 8, 4))


def test_values_shown_as_passed(rng):
    q = randn(rng, 1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"scale=1e\+39 is beyond float32"):
        attn.sdpa(q, q, q, scale=1e39)
    with pytest.raises(ValueError, match=r"key_lengths\[0\]=18446744073709551615"):
        attn.sdpa(q, q, q, key_lengths=np.array([2**64 - 1], dtype=np.uint64))
    # The binding itself (no Python pre-check) keeps the uint64 value too.
    with pytest.raises(ValueError, match=r"key_lengths\[0\]=18446744073709551615 is out of "
                                         r"range"):
        attn._attn.sdpa(q, q, q, key_lengths=np.array([2**64 - 1], dtype=np.uint64))


def test_article_functions_name_their_own_arguments(rng):
    with pytest.raises(ValueError, match=r"xq has shape \(2, 5, 12\) but xv \(3, 7, 10\)"):
        attn.multihead_cross_attention_list(randn(rng, 2, 5, 12), randn(rng, 3, 7, 10),
                                            [np.ones((12, 3))] * 2, [np.ones((10, 3))] * 2,
                                            [np.ones((10, 3))] * 2, np.ones((6, 12)))
    with pytest.raises(ValueError, match=r"self_attention_cols: Wk has shape \(2, 5\): axis 1 "
                                         r"must be x's height D=4"):
        attn.self_attention_cols(np.ones((4, 3)), np.ones((2, 5)), np.ones((2, 4)),
                                 np.ones((2, 4)), *(np.ones((2, 1)),) * 3)
    with pytest.raises(ValueError, match="Bk has 3 rows but Wk has 2"):
        attn.self_attention_cols(np.ones((4, 3)), *(np.ones((2, 4)),) * 3, np.ones((3, 1)),
                                 np.ones((2, 1)), np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"layer_norm: gamma has shape \(5,\).*x\.shape\[4\]"):
        attn.layer_norm(np.ones((2, 3, 3, 3, 4)), np.ones(5))


def test_mha_shapes_in_the_callers_terms(rng):
    x = randn(rng, 2, 5, 8)
    m = attn.MultiHeadAttention(2, Wqkv=weights(rng, 8, 8, 24))
    with pytest.raises(ValueError, match=r"Wqkv has shape \(8, 24\): axis 0 must be x's width 6"):
        m(x[..., :6])
    with pytest.raises(ValueError, match=r"mask has shape \(3, 5, 5\): axis 0 is 3 but must be 1 "
                                         r"or H=2"):
        m(x, mask=np.zeros((3, 5, 5)))


# ---- 11: one rule for numbers: never coerced -----------------------------------------


@pytest.mark.parametrize("n", [1.5, "2", True, np.float64(2.0)])
def test_num_threads_must_be_an_integer(rng, n):
    q = randn(rng, 1, 1, 3, 4)
    with pytest.raises(TypeError, match="num_threads must be an integer"):
        attn.sdpa(q, q, q, num_threads=n)
    with pytest.raises(TypeError, match="num_threads must be an integer"):
        attn.linear(q[0, 0], randn(rng, 4, 2), num_threads=n)


def test_numpy_integers_are_integers(rng):
    q = randn(rng, 1, 1, 3, 4)
    want = attn.sdpa(q, q, q, num_threads=2, seed=3)
    np.testing.assert_array_equal(attn.sdpa(q, q, q, num_threads=np.int64(2),
                                            seed=np.uint64(3)), want)


def test_head_count_must_be_an_integer(rng):
    x, W, Wp = randn(rng, 5, 8), weights(rng, 8, 8, 24), weights(rng, 8, 8, 8)
    with pytest.raises(TypeError, match="NH must be an integer, got 1.5"):
        attn.multihead_attention_vec(x, W, 1.5, Wp)
    with pytest.raises(TypeError, match="num_heads must be an integer"):
        attn.MultiHeadAttention(2.0, Wqkv=W)
    with pytest.raises(ValueError, match="NH=0 must be an integer >= 1"):
        attn.multihead_attention_vec(x, W, 0, Wp)


@pytest.mark.parametrize("seed", [2**64, -1])
def test_seed_out_of_uint64_range(rng, seed):
    q = randn(rng, 1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"seed=%d must be an integer in 0..2\*\*64-1" % seed):
        attn.sdpa(q, q, q, dropout_p=0.1, seed=seed)
    with pytest.raises(ValueError, match="seed"):
        attn.dropout_keep(seed, 0, 0, 0, 0, 0.5)


def test_largest_seed_is_accepted(rng):
    q = randn(rng, 1, 1, 3, 4)
    assert attn.sdpa(q, q, q, dropout_p=0.1, seed=2**64 - 1).shape == (1, 1, 3, 4)


def test_float64_beyond_float32_is_refused(rng):
    with pytest.raises(ValueError, match=r"x\[0\]=1e\+39 is beyond float32's range"):
        attn.softmax_lastdim(np.array([1e39, 0.0]))
    q = randn(rng, 1, 1, 3, 4)
    k = q.copy()
    k[0, 0, 2, 1] = -4e38
    with pytest.raises(ValueError, match=r"k\[0, 0, 2, 1\]=-4e\+38"):
        attn.sdpa(q, k, q)
    with pytest.raises(ValueError, match="mask.*beyond float32"):
        attn.sdpa(q, q, q, mask=np.full((3, 3), -1e39))
    # Infinities are the caller's own values and pass through.
    np.testing.assert_array_equal(attn.softmax_lastdim(np.array([-np.inf, 0.0])), [0.0, 1.0])
    close(attn.softmax_lastdim(np.array([3e38, 3e38])), [0.5, 0.5])


def test_strings_are_not_numbers(rng):
    q = randn(rng, 1, 1, 3, 4)
    with pytest.raises(TypeError, match="scale must be a real number"):
        attn.sdpa(q, q, q, scale="0.5")
    with pytest.raises(TypeError, match="dropout_p must be a real number"):
        attn.sdpa(q, q, q, dropout_p="0.1")


# ---- 12: causal ---------------------------------------------------------------------------


def test_causal_true_where_unambiguous(rng):
    q = randn(rng, 1, 2, 5, 4)
    np.testing.assert_array_equal(attn.sdpa(q, q, q, causal=True),
                                  attn.sdpa(q, q, q, causal="top_left"))
    np.testing.assert_array_equal(attn.sdpa(q, q, q, causal="top-left"),
                                  attn.sdpa(q, q, q, causal="top_left"))
    np.testing.assert_array_equal(attn.sdpa(q, q, q, causal=False), attn.sdpa(q, q, q))


def test_causal_true_is_an_error_where_ambiguous(rng):
    q, k = randn(rng, 1, 2, 3, 4), randn(rng, 1, 2, 5, 4)
    with pytest.raises(ValueError, match=r"causal=True is ambiguous here \(Nq=3 != Nkv=5\).*"
                                         r"top_left.*bottom_right"):
        attn.sdpa(q, k, k, causal=True)
    q = randn(rng, 2, 2, 5, 4)
    with pytest.raises(ValueError, match="key_lengths"):
        attn.sdpa(q, q, q, causal=True, key_lengths=[5, 3])
    x = randn(rng, 5, 8)
    m = attn.MultiHeadAttention(2, Wqkv=weights(rng, 8, 8, 24), causal=True)
    close(m(x), attn.MultiHeadAttention(2, Wqkv=m.Wqkv, causal="top_left")(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="ambiguous"):
        m(x, x[:3])


# ---- 13: masks broadcast as in NumPy; modules attn can call ------------------------------


@pytest.mark.parametrize("shape", [(), (1, 1, 1, 4, 5), (1, 1, 1, 1, 1, 5), (5,)])
def test_masks_broadcast_like_numpy(rng, shape):
    q, k, v = randn(rng, 1, 2, 4, 3), randn(rng, 1, 2, 5, 3), randn(rng, 1, 2, 5, 3)
    m = randn(rng, *shape) if shape else np.float64(-0.7)
    got = attn.sdpa(q, k, v, mask=m)
    full = np.broadcast_to(m, np.broadcast_shapes(np.shape(m), (1, 2, 4, 5)))
    want = sdpa_ref(q, k, v, mask=full.reshape(full.shape[-4:]))[0]
    close(got, want)


def test_mask_leading_axis_that_does_not_broadcast(rng):
    q = randn(rng, 1, 2, 4, 3)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 1, 1, 4, 4\): axis 0 is 2"):
        attn.sdpa(q, q, q, mask=np.zeros((2, 1, 1, 4, 4)))
    with pytest.raises(ValueError, match="size 1"):
        attn._attn.sdpa(q, q, q, mask=np.zeros((2, 1, 1, 4, 4)))


def test_from_torch_state_refuses_kdim_other_than_vdim(rng):
    E, NH = 8, 2
    state = {"q_proj_weight": randn(rng, E, E), "k_proj_weight": randn(rng, E, 6),
             "v_proj_weight": randn(rng, E, 5), "out_proj.weight": randn(rng, E, E)}
    with pytest.raises(ValueError, match=r"kdim=6, vdim=5.*kdim == vdim"):
        attn.MultiHeadAttention.from_torch_state(state, NH)
    state["v_proj_weight"] = randn(rng, E, 6)
    m = attn.MultiHeadAttention.from_torch_state(state, NH)
    assert m(randn(rng, 3, E), randn(rng, 4, 6)).shape == (3, E)
