"""The loops Python users write (issue 10): alternating NumPy matmuls (NumPy's
own OpenBLAS and threads), torch ops on torch's intra-op pool and attn calls
gives the same results as the calls made one at a time, bit for bit (attn
is deterministic for a given thread count); attn's few-row projections
(its GEMV kernels) agree with float64 einsum; build_info names the pool.
Not timed: bench/loops_py.py times these loops."""

import threading

import numpy as np
import pytest

import attn

D, NOUT, H, HKV, HD, NKV, NP = 256, 384, 8, 2, 32, 300, 40


@pytest.fixture
def data(rng):
    f = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)  # noqa: E731
    return dict(W=f(D, NOUT) * 0.1, b=f(NOUT), x1=f(1, D), xp=f(NP, D), q=f(1, H, 1, HD),
                k=f(1, HKV, NKV, HD), v=f(1, HKV, NKV, HD), qp=f(1, H, NP, HD),
                kp=f(1, HKV, NP, HD), vp=f(1, HKV, NP, HD))


def attn_calls(d, nt):
    """The attn calls of a decode and a prefill step, by name."""
    return {
        "linear1": lambda: attn.linear(d["x1"], d["W"], d["b"], num_threads=nt),
        "linearp": lambda: attn.linear(d["xp"], d["W"], d["b"], num_threads=nt),
        "sdpa1": lambda: attn.sdpa(d["q"], d["k"], d["v"], num_threads=nt),
        "sdpap": lambda: attn.sdpa(d["qp"], d["kp"], d["vp"], causal="top_left", num_threads=nt),
    }


@pytest.mark.parametrize("nt", [1, 2, 3])
def test_numpy_alternating_same_as_alone(data, nt):
    calls = attn_calls(data, nt)
    alone = {n: f() for n, f in calls.items()}
    W = data["W"]
    np_alone = data["xp"] @ W
    for _ in range(4):
        for n in ["linear1", "sdpa1", "linearp", "sdpap"]:
            y = data["x1"] @ W  # NumPy's BLAS between every attn call
            assert np.array_equal(calls[n](), alone[n]), n
            z = data["xp"] @ W
            assert np.array_equal(z, np_alone)
            assert y.shape == (1, NOUT)


def test_torch_pool_alternating_same_as_alone(torch, data):
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        calls = attn_calls(data, 2)
        alone = {n: f() for n, f in calls.items()}
        tW = torch.from_numpy(np.ascontiguousarray(data["W"].T))
        tx = torch.from_numpy(data["xp"])
        ts = torch.from_numpy(data["xp"])
        with torch.no_grad():
            t_alone = torch.nn.functional.linear(tx, tW).numpy().copy()
            for _ in range(4):
                for n in calls:
                    t = torch.nn.functional.linear(tx, tW)  # torch's BLAS and pool
                    torch.softmax(ts, -1)
                    assert np.array_equal(calls[n](), alone[n]), n
                    assert np.array_equal(t.numpy(), t_alone)
            # the attn result matches torch's own linear (independent code)
            np.testing.assert_allclose(attn.linear(data["xp"], data["W"]), t_alone, rtol=1e-4,
                                       atol=1e-4)
    finally:
        torch.set_num_threads(old)


def test_threads_alternating_same_as_alone(data):
    """attn from several Python threads while the main thread runs NumPy:
    every result equals the call made alone (num_threads=None: all CPUs)."""
    calls = attn_calls(data, None)
    alone = {n: f() for n, f in calls.items()}
    bad = []

    def worker():
        for _ in range(3):
            for n, f in calls.items():
                if not np.array_equal(f(), alone[n]):
                    bad.append(n)

    ts = [threading.Thread(target=worker) for _ in range(3)]
    for t in ts:
        t.start()
    for _ in range(10):
        data["xp"] @ data["W"]
    for t in ts:
        t.join()
    assert bad == []


@pytest.mark.parametrize("M", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("layout", ["contiguous", "x_transposed", "W_padded", "batched"])
def test_few_rows_linear_vs_float64(rng, M, layout):
    K, N = 131, 517
    W = rng.standard_normal((K, N + 3)).astype(np.float32)[:, :N]  # padded rows: ldw > N
    b = rng.standard_normal(N).astype(np.float32)
    if layout == "x_transposed":
        x = np.asfortranarray(rng.standard_normal((M, K)).astype(np.float32))
    elif layout == "batched":
        x = rng.standard_normal((M, 1, K)).astype(np.float32)
    else:
        x = rng.standard_normal((M, K)).astype(np.float32)
    if layout == "contiguous":
        W = np.ascontiguousarray(W)
    want = np.einsum("...i,io->...o", x.astype(np.float64), W.astype(np.float64)) + b
    got = attn.linear(x, W, b)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(K))
    for nt in (1, 2, 3):
        assert np.array_equal(attn.linear(x, W, b, num_threads=nt), got)


def test_build_info_names_the_pool():
    info = attn.build_info()
    assert "threads OpenMP" in info or "threads none" in info
    if "blas openblas" in info:
        assert "single-threaded" in info or "its own thread pool" in info
