"""`attn run mha --kv-heads` (grouped-query attention, fused and per-head)
against float64 NumPy with K/V heads expanded by np.repeat, and `attn
explain` agreeing with it on the shapes, plus its decode-with-cache mode."""
import numpy as np
import pytest

from test_commands import shape_line
from test_run import F32, mha_ref, rand, run


def gqa_ref(x, Wqkv, bqkv, Wo, bo, NH, G, **kw):
    """The fused [q | k | v] layout, heads expanded to plain MHA."""
    D = x.shape[-1]
    HS = D // NH
    cols = lambda a, b: Wqkv[:, a:b].reshape(D, -1, HS).transpose(1, 0, 2)
    Wq, Wk, Wv = cols(0, NH * HS), cols(NH * HS, (NH + G) * HS), cols((NH + G) * HS, None)
    bq, bk, bv = (bqkv[a:b].reshape(-1, HS) for a, b in
                  [(0, NH * HS), (NH * HS, (NH + G) * HS), ((NH + G) * HS, None)])
    rep = lambda a: np.repeat(a, NH // G, axis=0)
    return mha_ref(x, x, Wq, rep(Wk), rep(Wv), bq, rep(bk), rep(bv), Wo, bo, **kw)


@pytest.mark.parametrize("NH,G", [(4, 2), (6, 1), (4, 4)])
def test_mha_fused_kv_heads(attn, tmp_path, NH, G):
    B, N, D = 2, 7, 24
    HS = D // NH
    W = (NH + 2 * G) * HS
    x, Wqkv, bqkv = rand(B, N, D), rand(D, W, scale=0.3), rand(W)
    Wo, bo = rand(D, 5, scale=0.3), rand(5)
    got, _ = run(attn, tmp_path, "mha", "--heads", NH, "--kv-heads", G, "--causal", "top-left",
                 x=x, Wqkv=Wqkv, bqkv=bqkv, Wo=Wo, bo=bo)
    want = gqa_ref(x, Wqkv, bqkv, Wo, bo, NH, G, causal="top-left")
    np.testing.assert_allclose(got, want, **F32)


def test_mha_per_head_kv_heads_cross(attn, tmp_path):
    B, Nq, Nkv, D, NH, G, HS = 2, 3, 8, 10, 6, 2, 4
    xq, xkv = rand(B, Nq, D), rand(B, Nkv, D)
    Wq, Wk, Wv = rand(NH, D, HS), rand(G, D, HS), rand(G, D, HS)
    bq, bk, bv = rand(NH, HS), rand(G, HS), rand(G, HS)
    got, _ = run(attn, tmp_path, "mha", "--kv-heads", G, xq=xq, xkv=xkv, Wq=Wq, Wk=Wk, Wv=Wv,
                 bq=bq, bk=bk, bv=bv)
    rep = lambda a: np.repeat(a, NH // G, axis=0)
    want = mha_ref(xq, xkv, Wq, rep(Wk), rep(Wv), bq, rep(bk), rep(bv), None, 0)
    np.testing.assert_allclose(got, want, **F32)
    # Without --kv-heads the count comes from Wk's stack.
    got2, _ = run(attn, tmp_path, "mha", xq=xq, xkv=xkv, Wq=Wq, Wk=Wk, Wv=Wv, bq=bq, bk=bk, bv=bv)
    np.testing.assert_array_equal(got, got2)


def test_mha_kv_heads_errors(attn, tmp_path):
    x = rand(4, 12)
    _, p = run(attn, tmp_path, "mha", "--heads", 4, "--kv-heads", 3, x=x, Wqkv=rand(12, 30),
               rc=2)
    assert "--kv-heads 3 does not divide --heads 4" in p.stderr
    _, p = run(attn, tmp_path, "mha", "--heads", 4, "--kv-heads", 2, x=x, Wqkv=rand(12, 36),
               rc=3)
    assert "(NH+2G)*HS" in p.stderr and "24" in p.stderr
    _, p = run(attn, tmp_path, "mha", "--kv-heads", 2, x=x, Wq=rand(4, 12, 3), Wk=rand(1, 12, 3),
               Wv=rand(1, 12, 3), rc=3)
    assert "--kv-heads 2 but Wk" in p.stderr
    _, p = run(attn, tmp_path, "mha", x=x, Wq=rand(4, 12, 3), Wk=rand(3, 12, 3),
               Wv=rand(3, 12, 3), rc=3)
    assert "Wk (" in p.stderr and "a divisor of it for grouped-query" in p.stderr
    _, p = run(attn, tmp_path, "sdpa", "--kv-heads", 2, q=rand(1, 2, 3, 4), k=rand(1, 2, 3, 4),
               v=rand(1, 2, 3, 4), rc=2)
    assert "--kv-heads is for mha" in p.stderr


def test_explain_agrees_with_run(attn, tmp_path):
    """The fused width explain prints is the one run accepts."""
    B, N, D, NH, G = 1, 5, 32, 8, 2
    out = attn("explain", "--batch", B, "--seq", N, "--dim", D, "--heads", NH, "--kv-heads", G,
               "--causal", "top-left").stdout
    width = (NH + 2 * G) * (D // NH)
    assert "(%d, %d, %d)" % (B, N, width) in shape_line(out, "qkv")
    assert "Wqkv (%d, %d)" % (D, width) in shape_line(out, "qkv")
    x, Wqkv, bqkv = rand(B, N, D), rand(D, width, scale=0.3), rand(width)
    Wo, bo = rand(D, D, scale=0.3), rand(D)
    got, _ = run(attn, tmp_path, "mha", "--heads", NH, "--kv-heads", G, "--causal", "top-left",
                 x=x, Wqkv=Wqkv, bqkv=bqkv, Wo=Wo, bo=bo)
    assert got.shape == (B, N, D)
    np.testing.assert_allclose(got, gqa_ref(x, Wqkv, bqkv, Wo, bo, NH, G, causal="top-left"),
                               **F32)


def test_explain_decode_with_cache(attn):
    out = attn("explain", "--cache", 4096, "--dim", 4096, "--heads", 32, "--kv-heads", 8).stdout
    assert "KV cache of 4096 tokens" in out and "bottom_right" in out
    assert "Nq=1 Nkv=4097" in out
    assert "(1, 32, 1, 128)" in shape_line(out, "q")
    assert "(1, 8, 1, 128)" in shape_line(out, "k_new")
    assert "(1, 8, 4097, 128)" in shape_line(out, "k")
    assert "(1, 32, 1, 4097)" in shape_line(out, "scores")
    # 2 x 8 heads x 4097 tokens x 128 x 2 bytes = 16.0 MiB of bfloat16
    assert "16.0 MiB bfloat16" in out
    out = attn("explain", "--cache", 100, "--seq", 16, "--dim", 64, "--heads", 4).stdout
    assert "Nq=16 Nkv=116" in out and "(1, 4, 16, 116)" in shape_line(out, "scores")
    assert "not with --cross" in attn("explain", "--cache", 8, "--cross", rc=2).stderr
    assert "--cache" in attn("explain", "--help").stdout
