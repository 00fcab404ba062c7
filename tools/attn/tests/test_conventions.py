"""Conventions of `attn run` and `attn explain` in the user's terms (issue 9,
items 11-13): one causal spelling with Python, a bare --causal only where it
is unambiguous, hints for PyTorch weights and boolean masks, masks that
broadcast like NumPy, the .npy header read as strictly as NumPy, float64
values that do not fit float32 refused."""
import numpy as np
import pytest

from npyfiles import header, raw_npy
from test_run import F32, rand, run, sdpa_ref


# ---- 12: causal ------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["top_left", "top-left"])
def test_causal_spellings_agree(attn, tmp_path, spelling):
    q, k, v = rand(1, 2, 5, 4), rand(1, 2, 7, 4), rand(1, 2, 7, 4)
    got, _ = run(attn, tmp_path, "sdpa", "--causal", spelling, q=q, k=k, v=v)
    np.testing.assert_allclose(got, sdpa_ref(q, k, v, causal="top-left")[0], **F32)
    got, _ = run(attn, tmp_path, "sdpa", "--causal", spelling.replace("top", "bottom")
                 .replace("left", "right"), q=q, k=k, v=v)
    np.testing.assert_allclose(got, sdpa_ref(q, k, v, causal="bottom-right")[0], **F32)


def test_bare_causal_where_unambiguous(attn, tmp_path):
    q, k, v = rand(1, 2, 6, 4), rand(1, 2, 6, 4), rand(1, 2, 6, 4)
    got, _ = run(attn, tmp_path, "sdpa", "--causal", q=q, k=k, v=v)
    np.testing.assert_allclose(got, sdpa_ref(q, k, v, causal="top-left")[0], **F32)


def test_bare_causal_is_an_error_when_nq_differs_from_nkv(attn, tmp_path):
    q, k, v = rand(1, 2, 3, 4), rand(1, 2, 6, 4), rand(1, 2, 6, 4)
    _, p = run(attn, tmp_path, "sdpa", "--causal", q=q, k=k, v=v, rc=2)
    assert "top_left" in p.stderr and "bottom_right" in p.stderr and "Nq != Nkv" in p.stderr
    q = rand(2, 2, 6, 4)
    k = v = rand(2, 2, 6, 4)
    np.save(tmp_path / "L.npy", np.array([6, 4]))
    _, p = run(attn, tmp_path, "sdpa", "--causal", "--key-lengths", tmp_path / "L.npy", q=q, k=k,
               v=v, rc=2)
    assert "key lengths" in p.stderr


def test_explain_bare_causal_follows_the_same_rule(attn):
    out = attn("explain", "--seq", 8, "--dim", 16, "--heads", 2, "--causal").stdout
    assert "(top_left)" in out
    p = attn("explain", "--seq", 8, "--nkv", 12, "--dim", 16, "--heads", 2, "--causal", rc=2)
    assert "ambiguous" in p.stderr
    out = attn("explain", "--seq", 8, "--nkv", 12, "--dim", 16, "--heads", 2, "--causal",
               "bottom_right").stdout
    assert "(bottom_right)" in out


# ---- 12: hints -----------------------------------------------------------------


def test_torch_layout_hint(attn, tmp_path):
    x = rand(5, 8)
    Wq, Wk, Wv = rand(4, 8), rand(4, 8), rand(4, 8)  # PyTorch's (out, in)
    _, p = run(attn, tmp_path, "self", x=x, Wq=Wq, Wk=Wk, Wv=Wv, rc=3)
    assert "add --layout torch" in p.stderr
    got, _ = run(attn, tmp_path, "self", "--layout", "torch", x=x, Wq=Wq, Wk=Wk, Wv=Wv)
    assert got.shape == (5, 4)
    _, p = run(attn, tmp_path, "self", "--layout", "torch", x=x, Wq=Wq.T, Wk=Wk.T, Wv=Wv.T, rc=3)
    assert "drop --layout torch" in p.stderr


def test_boolean_mask_gets_the_additive_advice(attn, tmp_path):
    q = rand(1, 1, 3, 4)
    np.save(tmp_path / "m.npy", np.tril(np.ones((3, 3), bool)))
    _, p = run(attn, tmp_path, "sdpa", "--mask", tmp_path / "m.npy", q=q, k=q, v=q, rc=3)
    assert "np.where(keep, 0.0, -np.inf)" in p.stderr


# ---- 13: masks broadcast like NumPy -------------------------------------------------


@pytest.mark.parametrize("shape", [(), (1, 1, 1, 4, 5), (1, 1, 1, 1, 1, 5)])
def test_mask_of_rank_0_or_above_4(attn, tmp_path, shape):
    q, k, v = rand(1, 2, 4, 3), rand(1, 2, 5, 3), rand(1, 2, 5, 3)
    m = rand(*shape) if shape else np.float32(-0.5)
    np.save(tmp_path / "m.npy", m)
    got, _ = run(attn, tmp_path, "sdpa", "--mask", tmp_path / "m.npy", q=q, k=k, v=v)
    want = sdpa_ref(q, k, v, mask=np.asarray(m).reshape(np.shape(m)[-4:]) if shape else m)[0]
    np.testing.assert_allclose(got, want, **F32)


def test_mask_with_a_leading_axis_that_does_not_broadcast(attn, tmp_path):
    q = rand(1, 2, 4, 3)
    np.save(tmp_path / "m.npy", rand(2, 1, 1, 4, 4))
    _, p = run(attn, tmp_path, "sdpa", "--mask", tmp_path / "m.npy", q=q, k=q, v=q, rc=3)
    assert "size-1" in p.stderr


# ---- 13: the .npy header as NumPy reads it --------------------------------------------


@pytest.mark.parametrize("shape,word", [("(6)", "not a tuple"), ("(02, 03)", "leading zero"),
                                        ("(2, 03)", "leading zero")])
def test_npy_shapes_numpy_rejects(attn, tmp_path, shape, word):
    f = tmp_path / "x.npy"
    f.write_bytes(raw_npy(header(shape=shape), b"\0" * 4 * 6))
    with pytest.raises(Exception):
        np.load(f)  # NumPy refuses these too
    p = attn("run", "softmax", "--x", f, "-o", tmp_path / "o.npy", rc=3)
    assert word in p.stderr


def test_npy_shapes_numpy_accepts(attn, tmp_path):
    for shape, n in (("(6,)", 6), ("(0, 3)", 0), ("(2, 3,)", 6), ("( 2 , 3 )", 6), ("(10,)", 10)):
        f = tmp_path / "x.npy"
        f.write_bytes(raw_npy(header(shape=shape), b"\0" * 4 * n))
        assert np.load(f).size == n
        attn("info", f)


# ---- 11: float64 beyond float32 ----------------------------------------------------------


def test_float64_beyond_float32_is_refused(attn, tmp_path):
    x = np.array([[1e39, 0.0]])
    _, p = run(attn, tmp_path, "softmax", x=x, rc=3)
    assert "beyond float32" in p.stderr and "1e+39" in p.stderr
    # inf written explicitly is the user's value, passed on.
    got, _ = run(attn, tmp_path, "softmax", x=np.array([[-np.inf, 0.0]]))
    np.testing.assert_array_equal(got, [[0.0, 1.0]])
    got, _ = run(attn, tmp_path, "softmax", x=np.array([[3e38, 3e38]]))
    np.testing.assert_allclose(got, [[0.5, 0.5]])


@pytest.mark.parametrize("opt,val", [("--threads", "1.5"), ("--threads", "-1"), ("--seed", "-1"),
                                     ("--seed", str(2**64)), ("--heads", "1.5"),
                                     ("--scale", "1e39"), ("--dropout", "1")])
def test_numbers_are_never_coerced(attn, tmp_path, opt, val):
    q = rand(1, 1, 3, 4)
    op = "mha" if opt == "--heads" else "sdpa"
    if op == "mha":
        _, p = run(attn, tmp_path, op, opt, val, x=rand(3, 4), Wqkv=rand(4, 12), rc=2)
    else:
        _, p = run(attn, tmp_path, op, opt, val, q=q, k=q, v=q, rc=2)
    assert opt in p.stderr
