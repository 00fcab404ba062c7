"""The binding's one conversion path (python/ext/convert.h): argument tables
parse positional and keyword arguments like Python functions, None means
"not given", every argument is named in its errors, and results take the
documented dtype."""
import numpy as np
import pytest

from attn import _attn


def q4(n=3, d=4):
    return np.arange(n * d, dtype=np.float32).reshape(1, 1, n, d) / 10


def test_positional_and_keyword_arguments_agree():
    q = q4()
    a = _attn.sdpa(q, q, q, None, "top_left")
    b = _attn.sdpa(q=q, k=q, v=q, causal="top_left")
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] is None and a[2] is None


def test_python_style_call_errors():
    q = q4()
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        _attn.sdpa(q, q, q, bogus=1)
    with pytest.raises(TypeError, match="multiple values for argument 'q'"):
        _attn.sdpa(q, q, q, q=q)
    with pytest.raises(TypeError, match="takes at most"):
        _attn.softmax(q, None, None)
    with pytest.raises(TypeError, match="sdpa: k is required"):
        _attn.sdpa(q, None, q)


def test_enum_and_rank_messages_name_the_argument():
    q = q4()
    with pytest.raises(ValueError, match=r"sdpa: causal must be one of 'none', 'top_left', "
                                         r"'bottom_right'; got 'lower'"):
        _attn.sdpa(q, q, q, causal="lower")
    with pytest.raises(ValueError, match=r"sdpa: q has shape \(3, 4\) \(rank 2\); it must have "
                                         r"rank 4"):
        _attn.sdpa(q[0, 0], q, q)
    with pytest.raises(TypeError, match="sdpa: v has dtype int64"):
        _attn.sdpa(q, q, np.zeros((1, 1, 3, 4), np.int64))


def test_none_means_not_given():
    q = q4()
    a = _attn.sdpa(q, q, q, scale=None, mask=None, num_threads=None, window_left=None)
    np.testing.assert_array_equal(a[0], _attn.sdpa(q, q, q)[0])


def test_result_dtype_follows_the_voting_inputs():
    q = q4()
    assert _attn.sdpa(q, q, q)[0].dtype == np.float32
    assert _attn.sdpa(q.astype(np.float64), q, q)[0].dtype == np.float64
    # Masks and per-head tables do not vote.
    assert _attn.sdpa(q, q, q, mask=np.zeros((3, 3)))[0].dtype == np.float32
    assert _attn.sdpa(q, q, q, sinks=np.zeros(1))[0].dtype == np.float32


def test_caller_supplied_output_is_written_in_place():
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    out = np.empty((5, 3), np.float32).T
    r = _attn.softmax(x, out=out)
    assert r is out
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="softmax: out must be a writable float32 array"):
        _attn.softmax(x, out=np.empty((3, 5)))


def test_isa_names():
    with pytest.raises(ValueError, match="set_isa: name must be one of 'auto', 'generic'"):
        _attn.set_isa("sse2")
    assert _attn.isa_supported(1) is True
    assert _attn.isa_supported(99) is False
