"""attn.MultiHeadAttention against PyTorch's nn.MultiheadAttention
(batch_first=True), weights moved with from_torch_state / to_torch_state.
Every parameter is set explicitly (random, well-scaled) or zeroed; none of
PyTorch's own initial values is relied upon.
Tolerance: rtol 1e-4, atol 5e-5 (both sides compute in float32)."""

import numpy as np
import pytest

import attn
from numpy_ref import randn

RTOL, ATOL = 1e-4, 5e-5


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def torch_mha(torch, rng, D, NH, bias=True, kdim=None, vdim=None, zero_bias=False):
    m = torch.nn.MultiheadAttention(D, NH, batch_first=True, bias=bias, kdim=kdim, vdim=vdim)
    m.eval()
    with torch.no_grad():
        for name, prm in m.named_parameters():
            fan_in = prm.shape[-1] if prm.ndim == 2 else 1
            if prm.ndim == 1:
                val = np.zeros(prm.shape) if zero_bias else rng.standard_normal(prm.shape) * 0.5
            else:
                val = rng.standard_normal(prm.shape) / np.sqrt(fan_in)
            prm.copy_(torch.from_numpy(val.astype(np.float32)))
    return m


def state_of(m):
    return {k: v.numpy() for k, v in m.state_dict().items()}


def run_torch(torch, m, xq, xkv=None, **kw):
    xq_t = torch.from_numpy(xq)
    xkv_t = xq_t if xkv is None else torch.from_numpy(xkv)
    # Grad enabled on purpose: it keeps PyTorch 1.13 on its plain Python path
    # (its fused "fast path" fails with bias=False).
    out, _ = m(xq_t, xkv_t, xkv_t, need_weights=False, **kw)
    return out.detach().numpy()


@pytest.mark.parametrize("bias,zero_bias", [(True, False), (True, True), (False, False)])
@pytest.mark.parametrize("B,N,D,NH", [(1, 1, 4, 1), (2, 7, 16, 4), (3, 13, 24, 3), (2, 64, 64, 8)])
def test_self_attention(torch, rng, B, N, D, NH, bias, zero_bias):
    m = torch_mha(torch, rng, D, NH, bias=bias, zero_bias=zero_bias)
    a = attn.MultiHeadAttention.from_torch_state(state_of(m), NH)
    x = randn(rng, B, N, D, dtype=np.float32)
    out = a(x)
    assert out.dtype == np.float32
    close(out, run_torch(torch, m, x))


@pytest.mark.parametrize("B,N,D,NH", [(1, 1, 4, 1), (2, 9, 16, 4), (2, 33, 32, 2)])
def test_causal(torch, rng, B, N, D, NH):
    m = torch_mha(torch, rng, D, NH)
    a = attn.MultiHeadAttention.from_torch_state(state_of(m), NH)
    x = randn(rng, B, N, D, dtype=np.float32)
    causal = torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1)  # True = not allowed
    ref = run_torch(torch, m, x, attn_mask=causal)
    close(a(x, causal="top_left"), ref)
    close(attn.MultiHeadAttention.from_torch_state(state_of(m), NH, causal="top_left")(x), ref)
    # the same through an additive float mask
    mask = np.where(causal.numpy(), -np.inf, 0.0).astype(np.float32)
    close(a(x, mask=mask), ref)
    if N > 1:
        assert np.abs(a(x) - ref).max() > 1e-3  # causal matters here


def test_key_padding(torch, rng):
    B, Nq, Nkv, D, NH = 3, 5, 9, 16, 4
    m = torch_mha(torch, rng, D, NH)
    a = attn.MultiHeadAttention.from_torch_state(state_of(m), NH)
    xq = randn(rng, B, Nq, D, dtype=np.float32)
    xkv = randn(rng, B, Nkv, D, dtype=np.float32)
    L = np.array([9, 2, 6])
    pad = np.arange(Nkv)[None, :] >= L[:, None]  # True = padding (PyTorch's convention)
    ref = run_torch(torch, m, xq, xkv, key_padding_mask=torch.from_numpy(pad))
    close(a(xq, xkv, key_lengths=L), ref)
    close(a(xq, xkv, mask=np.where(pad, -np.inf, 0.0)[:, None, None, :]), ref)
    # an arbitrary (not right-aligned) padding pattern, through the mask
    pad2 = rng.random((B, Nkv)) < 0.4
    pad2[:, 0] = False
    ref2 = run_torch(torch, m, xq, xkv, key_padding_mask=torch.from_numpy(pad2))
    close(a(xq, xkv, mask=np.where(pad2, -np.inf, 0.0)[:, None, None, :]), ref2)


def test_key_padding_and_causal_self(torch, rng):
    B, N, D, NH = 2, 8, 12, 3
    m = torch_mha(torch, rng, D, NH)
    a = attn.MultiHeadAttention.from_torch_state(state_of(m), NH)
    x = randn(rng, B, N, D, dtype=np.float32)
    L = np.array([8, 5])
    pad = np.arange(N)[None, :] >= L[:, None]
    causal = torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1)
    ref = run_torch(torch, m, x, attn_mask=causal, key_padding_mask=torch.from_numpy(pad))
    close(a(x, causal="top_left", key_lengths=L), ref)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B,Nq,Nkv,D,NH", [(1, 1, 5, 8, 2), (2, 7, 3, 16, 4), (2, 12, 31, 32, 8)])
def test_cross_attention(torch, rng, B, Nq, Nkv, D, NH, bias):
    m = torch_mha(torch, rng, D, NH, bias=bias, kdim=D, vdim=D)
    a = attn.MultiHeadAttention.from_torch_state(state_of(m), NH)
    xq = randn(rng, B, Nq, D, dtype=np.float32)
    xkv = randn(rng, B, Nkv, D, dtype=np.float32)
    close(a(xq, xkv), run_torch(torch, m, xq, xkv))


def test_cross_attention_other_kdim(torch, rng):
    B, Nq, Nkv, D, NH, Dkv = 2, 6, 11, 16, 4, 10
    m = torch_mha(torch, rng, D, NH, kdim=Dkv, vdim=Dkv)
    st = state_of(m)
    assert "q_proj_weight" in st
    a = attn.MultiHeadAttention.from_torch_state(st, NH)
    xq = randn(rng, B, Nq, D, dtype=np.float32)
    xkv = randn(rng, B, Nkv, Dkv, dtype=np.float32)
    close(a(xq, xkv), run_torch(torch, m, xq, xkv))
    # and back: the same keys and values
    back = a.to_torch_state()
    assert set(back) == set(st)
    for k in st:
        np.testing.assert_array_equal(back[k], st[k])


def test_to_torch_state_loads(torch, rng):
    """A module built in NumPy (per-head lists), moved into PyTorch."""
    D, NH, HS = 12, 3, 4
    Wq = [randn(rng, D, HS, scale=D**-0.5, dtype=np.float32) for _ in range(NH)]
    Wk = [randn(rng, D, HS, scale=D**-0.5, dtype=np.float32) for _ in range(NH)]
    Wv = [randn(rng, D, HS, scale=D**-0.5, dtype=np.float32) for _ in range(NH)]
    bq = [randn(rng, HS, dtype=np.float32) for _ in range(NH)]
    Wo = randn(rng, D, D, scale=D**-0.5, dtype=np.float32)
    a = attn.MultiHeadAttention(Wq=Wq, Wk=Wk, Wv=Wv, bq=bq, Wo=Wo)
    m = torch.nn.MultiheadAttention(D, NH, batch_first=True, bias=True)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in a.to_torch_state().items()})
    m.eval()
    x = randn(rng, 2, 7, D, dtype=np.float32)
    close(a(x), run_torch(torch, m, x))
    xkv = randn(rng, 2, 4, D, dtype=np.float32)
    close(a(x, xkv), run_torch(torch, m, x, xkv))


def test_threads_independent_of_torch(torch, rng):
    """Importing torch lowers OpenMP's global thread count; attn's default
    (num_threads=None) still means every CPU, and results do not depend on it."""
    q, k, v = (randn(rng, 2, 4, 96, 32, dtype=np.float32) for _ in range(3))
    a = attn.sdpa(q, k, v)
    for nt in (1, 2, 3):
        np.testing.assert_array_equal(attn.sdpa(q, k, v, num_threads=nt), a)
