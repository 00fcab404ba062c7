"""Packed weights (attn.pack_weight, attn.linear with a PackedWeight) against
float64 np.einsum and against attn.linear on the plain W."""
import numpy as np
import pytest

import attn


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("rows,k,n", [(1, 1, 1), (1, 64, 48), (3, 7, 49), (8, 300, 517),
                                      (9, 33, 96), (40, 16, 200)])
def test_matches_einsum_and_plain(rows, k, n):
    r = rng(rows + k + n)
    x = r.standard_normal((rows, k)).astype(np.float32)
    W = r.standard_normal((k, n)).astype(np.float32)
    b = r.standard_normal(n).astype(np.float32)
    P = attn.pack_weight(W)
    assert P.shape == (k, n)
    assert P.data.dtype == np.float32 and P.data.shape == (-(-n // 48), k, 48)
    y = attn.linear(x, P, b)
    ref = np.einsum("ni,io->no", x.astype(np.float64), W.astype(np.float64)) + b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(x).sum(1).max())
    if rows <= 8:  # attn.linear's few-row kernel: the same multiply-add chain
        assert np.array_equal(y, attn.linear(x, W, b))


def test_layout():
    W = rng(1).standard_normal((5, 101)).astype(np.float32)
    d = attn.pack_weight(W[:, ::-1]).data  # a W with a negative stride
    Wr = np.ascontiguousarray(W[:, ::-1])
    for p in range(d.shape[0]):
        cols = Wr[:, 48 * p:48 * (p + 1)]
        assert np.array_equal(d[p, :, :cols.shape[1]], cols)
        assert not d[p, :, cols.shape[1]:].any()


def test_ranks_dtypes_threads():
    r = rng(2)
    x = r.standard_normal((2, 3, 70))
    W = r.standard_normal((70, 130))
    P = attn.pack_weight(W)  # float64 W: packed as float32
    assert P.data.dtype == np.float32
    y = attn.linear(x, P)
    assert y.shape == (2, 3, 130) and y.dtype == np.float64  # float64 in, float64 out
    ref = np.einsum("abi,io->abo", x, W.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)
    y1 = attn.linear(x[0, 0], P)
    assert y1.shape == (130,) and np.array_equal(y1, y[0, 0])
    for t in (1, 2, 3):
        assert np.array_equal(attn.linear(x, P, num_threads=t), y)


def test_errors():
    P = attn.pack_weight(np.ones((8, 50), np.float32))
    with pytest.raises(ValueError, match="PackedWeight of shape \\(8, 50\\): its in=8 must be "
                                         "x's width 7"):
        attn.linear(np.ones((2, 7), np.float32), P)
    with pytest.raises(ValueError, match="bias.shape\\[0\\]=49"):
        attn.linear(np.ones((2, 8), np.float32), P, np.ones(49, np.float32))
    with pytest.raises(ValueError, match="pack_weight: W"):
        attn.pack_weight(np.ones(8, np.float32))
    bad = attn.PackedWeight(P.data[:, :, ::2], P.shape)
    with pytest.raises(ValueError, match="Wp is \\(2, 8, 24\\) but must be \\(2, 8, 48\\)"):
        attn.linear(np.ones((2, 8), np.float32), bad)
