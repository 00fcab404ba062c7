"""attn.rope, the rope_inv_freq* tables, attn.rms_norm and grouped-query
MultiHeadAttention against float64 NumPy written here from the published
formulas (Hugging Face's rotate_half, Meta's complex multiply, the scaling
recipes) and PyTorch (nn.MultiheadAttention has no GQA in 1.13: its K/V
heads are expanded by repeat)."""

import numpy as np
import pytest

import attn
import numpy_ref
from numpy_ref import close, randn, weights


# ---- RoPE references -------------------------------------------------------


def hf_rope(x, pos, inv_freq, r=None, mscale=1.0):
    """Hugging Face Llama: cos/sin of cat(freqs, freqs), x*cos + rotate_half(x)*sin."""
    x = np.asarray(x, np.float64)
    r = x.shape[-1] if r is None else r
    freqs = np.asarray(pos, np.float64)[..., None] * inv_freq  # (..., N, r/2)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb) * mscale, np.sin(emb) * mscale
    xr, xp = x[..., :r], x[..., r:]
    x1, x2 = xr[..., : r // 2], xr[..., r // 2:]
    rot = np.concatenate([-x2, x1], axis=-1)
    return np.concatenate([xr * cos + rot * sin, xp], axis=-1)


def meta_rope(x, pos, inv_freq, r=None):
    """Meta's Llama: pairs (2t, 2t+1) as complex numbers times e^{i theta}."""
    x = np.asarray(x, np.float64)
    r = x.shape[-1] if r is None else r
    z = x[..., :r:2] + 1j * x[..., 1:r:2]
    w = z * np.exp(1j * (np.asarray(pos, np.float64)[..., None] * inv_freq))
    out = x.copy()
    out[..., :r:2], out[..., 1:r:2] = w.real, w.imag
    return out


def default_inv(r, base=10000.0):
    return 1.0 / base ** (np.arange(0, r, 2, dtype=np.float64) / r)


# Float32 rounding of values of size |x| (~3 for N(0,1) data): a few 1e-7.
RTOL, ATOL = 1e-6, 2e-6


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 3, 5, 8), (1, 4, 17, 64), (3, 7, 128),
                                   (11, 80)])
def test_rope_neox_is_hf_rotate_half(rng, shape):
    x = randn(rng, *shape, dtype=np.float32)
    pos = rng.integers(0, 10000, shape[-2])
    got = attn.rope(x, pos)
    assert got.dtype == np.float32 and got.shape == x.shape
    close(got, hf_rope(x, pos, default_inv(shape[-1])), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("r", [2, 16, 32])
def test_rope_gptj_is_complex_multiply_partial(rng, r):
    x = randn(rng, 2, 3, 9, 32)
    pos = rng.integers(0, 5000, 9)
    got = attn.rope(x, pos, style="gptj", rotary_dim=r, base=500000.0)
    assert got.dtype == np.float64  # float64 in, float64 out
    want = meta_rope(x.astype(np.float32), pos, default_inv(r, 500000.0), r)
    close(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(got[..., r:], x[..., r:].astype(np.float32))


def test_rope_partial_neox_mscale_table(rng):
    x = randn(rng, 2, 4, 6, 80, dtype=np.float32)
    pos = rng.integers(0, 2**20, 6)
    inv, ms = attn.rope_inv_freq_yarn(32, 4.0, 4096)
    got = attn.rope(x, pos, rotary_dim=32, inv_freq=inv, mscale=ms)
    close(got, hf_rope(x, pos, inv, r=32, mscale=ms), rtol=RTOL, atol=ATOL)


def test_rope_large_positions_float64(rng):
    """Positions to 1e6: the angle is p * inv_freq in double from the integer."""
    x = randn(rng, 8, 128, dtype=np.float32)
    pos = np.array([0, 1, 4095, 65535, 131072, 999_999, 1_000_000, 3_000_000])
    got = attn.rope(x[:, None, :].repeat(1, 1), pos[:, None])  # (8, 1, 128), positions per row
    want = hf_rope(x[:, None, :], pos[:, None], default_inv(128))
    close(got, want, rtol=RTOL, atol=ATOL)
    # Float32 angles (what a float32 implementation computes) are far off at 1e6.
    ang32 = (np.float32(1_000_000) * default_inv(128).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(ang32 - 1_000_000 * default_inv(128))) > 1e-3


def test_rope_positions_broadcast(rng):
    """Per-sequence positions (B, 1, N) and per-row (B, H, N)."""
    B, H, N, d = 3, 2, 5, 16
    x = randn(rng, B, H, N, d, dtype=np.float32)
    pos = rng.integers(0, 1000, (B, 1, N))
    got = attn.rope(x, pos)
    close(got, hf_rope(x, np.broadcast_to(pos, (B, H, N)), default_inv(d)), rtol=RTOL,
          atol=ATOL)
    pos3 = rng.integers(0, 1000, (B, H, N))
    close(attn.rope(x, pos3), hf_rope(x, pos3, default_inv(d)), rtol=RTOL, atol=ATOL)
    # Rank 5: leading axes folded, positions per row still right.
    x5 = randn(rng, 2, B, H, N, d, dtype=np.float32)
    p5 = rng.integers(0, 1000, (2, B, 1, N))
    close(attn.rope(x5, p5), hf_rope(x5, np.broadcast_to(p5, x5.shape[:-1]), default_inv(d)),
          rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"positions has shape \(4,\)"):
        attn.rope(x, np.arange(4))


def test_rope_out_in_place_and_strided(rng):
    B, N, H, d = 2, 7, 3, 32
    buf = randn(rng, B, N, H, d, dtype=np.float32)
    q = buf.transpose(0, 2, 1, 3)  # (B, H, N, d), a strided view
    pos = np.arange(100, 100 + N)
    want = attn.rope(q, pos)
    assert not np.shares_memory(want, buf)
    res = attn.rope(q, pos, out=q)  # in place on the same view
    assert res is q
    np.testing.assert_array_equal(q, want)
    out = np.empty_like(want)
    assert attn.rope(want, pos, out=out) is out
    with pytest.raises(ValueError, match="overlaps"):
        attn.rope(q, pos, out=buf.transpose(0, 2, 1, 3)[:, :, ::-1])


def test_rope_prefill_equals_per_token(rng):
    """Rotating N tokens at once equals rotating each at its position."""
    x = randn(rng, 1, 4, 33, 64, dtype=np.float32)
    pos = np.arange(5000, 5033)
    all_ = attn.rope(x, pos)
    one = np.concatenate([attn.rope(x[:, :, n:n + 1], pos[n:n + 1]) for n in range(33)], axis=2)
    np.testing.assert_array_equal(all_, one)


def test_rope_errors(rng):
    x = randn(rng, 2, 4, 8, dtype=np.float32)
    p = np.arange(4)
    with pytest.raises(ValueError, match="rotary_dim=5 must be even"):
        attn.rope(x, p, rotary_dim=5)
    with pytest.raises(ValueError, match="rotary_dim=10"):
        attn.rope(x, p, rotary_dim=10)
    with pytest.raises(ValueError, match="style must be"):
        attn.rope(x, p, style="half")
    with pytest.raises(ValueError, match="inv_freq has 3 values but rotary_dim=8 needs 4"):
        attn.rope(x, p, inv_freq=np.ones(3))
    with pytest.raises(ValueError, match="base=1"):
        attn.rope(x, p, base=1.0)
    with pytest.raises(TypeError, match="integers"):
        attn.rope(x, p.astype(np.float64))
    with pytest.raises(ValueError, match="must be"):
        attn.rope(x[0, 0], p)


# ---- the scaling tables, from the recipes in Hugging Face's rope utils -----


def test_inv_freq_tables():
    r = 128
    base = 500000.0
    f0 = default_inv(r, base)
    np.testing.assert_allclose(attn.rope_inv_freq(r, base), f0, rtol=1e-15)
    np.testing.assert_allclose(attn.rope_inv_freq_linear(r, 8.0, base), f0 / 8, rtol=1e-15)
    nb = 10000.0 * 4.0 ** (r / (r - 2))
    np.testing.assert_allclose(attn.rope_inv_freq_ntk(r, 4.0), default_inv(r, nb), rtol=1e-13)

    # Llama 3.1 (factor 8, low 1, high 4, original 8192)
    wl = 2 * np.pi / f0
    low_wl, high_wl = 8192 / 1.0, 8192 / 4.0
    want = np.where(wl > low_wl, f0 / 8, f0)
    smooth = (8192 / wl - 1.0) / (4.0 - 1.0)
    smoothed = (1 - smooth) * want / 8 + smooth * want
    medium = ~(wl < high_wl) & ~(wl > low_wl)
    want = np.where(medium, smoothed, want)
    got = attn.rope_inv_freq_llama3(r)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert medium.any() and (wl > low_wl).any() and (wl < high_wl).any()

    # YaRN (factor 4, original 4096, beta_fast 32, beta_slow 1, base 10000)
    def corr(n):
        return r * np.log(4096 / (n * 2 * np.pi)) / (2 * np.log(10000.0))

    lo, hi = max(np.floor(corr(32)), 0), min(np.ceil(corr(1)), r - 1)
    ramp = np.clip((np.arange(r // 2) - lo) / (hi - lo), 0, 1)
    pf = 10000.0 ** (np.arange(0, r, 2) / r)
    extra_factor = 1 - ramp
    want = (1 / (4 * pf)) * (1 - extra_factor) + (1 / pf) * extra_factor
    got, ms = attn.rope_inv_freq_yarn(r, 4.0, 4096)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert ms == pytest.approx(0.1 * np.log(4.0) + 1.0, rel=1e-15)

    with pytest.raises(ValueError, match="high_freq_factor=1 must be > low_freq_factor=4"):
        attn.rope_inv_freq_llama3(r, low_freq_factor=4.0, high_freq_factor=1.0)
    with pytest.raises(ValueError, match="rotary_dim=7"):
        attn.rope_inv_freq(7)


def test_inv_freq_matches_torch_recipe(torch):
    """The default and linear tables as HF computes them with torch (float32
    there): equal to attn's float64 table within float32 rounding."""
    r, base = 64, 10000.0
    hf = 1.0 / (base ** (torch.arange(0, r, 2, dtype=torch.int64).float() / r))
    np.testing.assert_allclose(attn.rope_inv_freq(r, base), hf.double().numpy(), rtol=2e-7)
    np.testing.assert_allclose(attn.rope_inv_freq_linear(r, 2.0, base), hf.double().numpy() / 2,
                               rtol=2e-7)


# ---- RMSNorm ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (3, 17), (2, 3, 64), (2, 2, 3, 4096), (2, 1, 2, 3, 8)])
def test_rms_norm_float64(rng, shape):
    x = randn(rng, *shape)
    g = randn(rng, shape[-1])
    want = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * g
    close(attn.rms_norm(x, g), want, rtol=2e-6, atol=2e-6)
    want0 = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5)
    close(attn.rms_norm(x, eps=1e-5), want0, rtol=2e-6, atol=2e-6)


def test_rms_norm_in_place_and_torch(rng, torch):
    x = randn(rng, 4, 9, 32, dtype=np.float32)
    g = randn(rng, 32, dtype=np.float32)
    t = torch.from_numpy(x)
    want = (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * torch.from_numpy(g)).numpy()
    got = attn.rms_norm(x, g)
    close(got, want, rtol=1e-5, atol=1e-6)
    assert attn.rms_norm(x, g, out=x) is x
    np.testing.assert_array_equal(x, got)
    with pytest.raises(ValueError, match="gamma.shape\\[0\\]=31 but x.shape\\[2\\]=32"):
        attn.rms_norm(x, g[:31])
    with pytest.raises(ValueError, match="eps=-1"):
        attn.rms_norm(x, eps=-1.0)


# ---- grouped-query MultiHeadAttention ----------------------------------------


@pytest.mark.parametrize("causal", ["none", "top_left"])
@pytest.mark.parametrize("NH,G,HS", [(4, 2, 8), (8, 1, 4), (6, 3, 5), (4, 4, 3)])
def test_gqa_fused_against_numpy(rng, NH, G, HS, causal):
    B, N, D = 2, 11, 24
    C = (NH + 2 * G) * HS
    W, b = weights(rng, D, D, C), randn(rng, C)
    Wo, bo = weights(rng, NH * HS, NH * HS, D), randn(rng, D)
    m = attn.MultiHeadAttention(NH, num_kv_heads=G, Wqkv=W, bqkv=b, Wo=Wo, bo=bo, causal=causal)
    x = randn(rng, B, N, D)
    Wq = W[:, :NH * HS].reshape(D, NH, HS).transpose(1, 0, 2)
    Wk = W[:, NH * HS:(NH + G) * HS].reshape(D, G, HS).transpose(1, 0, 2)
    Wv = W[:, (NH + G) * HS:].reshape(D, G, HS).transpose(1, 0, 2)
    bq, bk, bv = b[:NH * HS].reshape(NH, HS), b[NH * HS:(NH + G) * HS].reshape(G, HS), \
        b[(NH + G) * HS:].reshape(G, HS)
    want = numpy_ref.mha(x, None, Wq, Wk, Wv, bq, bk, bv, Wo, bo, causal=causal)
    close(m(x), want)
    # The per-head form of the same weights agrees; num_kv_heads comes from Wk.
    m2 = attn.MultiHeadAttention(Wq=Wq, Wk=Wk, Wv=Wv, bq=bq, bk=bk, bv=bv, Wo=Wo, bo=bo,
                                 causal=causal)
    assert m2.num_kv_heads == G
    close(m2(x), want)
    # Cross-attention with Nkv != Nq.
    xkv = randn(rng, B, 5, D)
    close(m2(x, xkv, causal="none"),
          numpy_ref.mha(x, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo))


def test_gqa_against_torch_expanded(rng, torch):
    """nn.MultiheadAttention with each kv head's weights repeated NH/G times."""
    B, N, D, NH, G = 2, 9, 32, 8, 2
    HS = D // NH
    m = attn.MultiHeadAttention(NH, num_kv_heads=G,
                                Wqkv=weights(rng, D, D, (NH + 2 * G) * HS, dtype=np.float32),
                                bqkv=randn(rng, (NH + 2 * G) * HS, dtype=np.float32),
                                Wo=weights(rng, D, D, D, dtype=np.float32),
                                bo=randn(rng, D, dtype=np.float32), causal="top_left")
    W, b = m.Wqkv, m.bqkv
    rep = lambda A: np.repeat(A.reshape(A.shape[0], G, HS), NH // G, axis=1).reshape(A.shape[0], D)
    Wk, Wv = W[:, D:D + G * HS], W[:, D + G * HS:]
    in_w = np.concatenate([W[:, :D], rep(Wk), rep(Wv)], axis=1).T  # torch (3D, D)
    bk, bv = b[D:D + G * HS], b[D + G * HS:]
    in_b = np.concatenate([b[:D], rep(bk[None])[0], rep(bv[None])[0]])
    t = torch.nn.MultiheadAttention(D, NH, batch_first=True)
    with torch.no_grad():
        t.in_proj_weight.copy_(torch.from_numpy(np.ascontiguousarray(in_w)))
        t.in_proj_bias.copy_(torch.from_numpy(in_b))
        t.out_proj.weight.copy_(torch.from_numpy(np.ascontiguousarray(m.Wo.T)))
        t.out_proj.bias.copy_(torch.from_numpy(m.bo))
        x = randn(rng, B, N, D, dtype=np.float32)
        mask = torch.triu(torch.ones(N, N, dtype=torch.bool), 1)
        want = t(*(torch.from_numpy(x),) * 3, attn_mask=mask, need_weights=False)[0].numpy()
    close(m(x), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no grouped-query form"):
        m.to_torch_state()


def test_gqa_errors(rng):
    W = weights(rng, 12, 12, 36)
    with pytest.raises(ValueError, match="num_kv_heads=4 must divide num_heads=6"):
        attn.MultiHeadAttention(6, num_kv_heads=4, Wqkv=W)(randn(rng, 3, 12))
    with pytest.raises(ValueError, match="not a multiple of num_heads \\+ 2\\*num_kv_heads=8"):
        attn.MultiHeadAttention(4, num_kv_heads=2, Wqkv=W)(randn(rng, 3, 12))
    Wq, Wk = weights(rng, 12, 4, 12, 3), weights(rng, 12, 2, 12, 3)
    with pytest.raises(ValueError, match="num_kv_heads=1 but Wk holds 2 heads"):
        attn.MultiHeadAttention(Wq=Wq, Wk=Wk, Wv=Wk, num_kv_heads=1)
    with pytest.raises(ValueError, match="Wv.shape\\[0\\]=3 but num_kv_heads=2"):
        attn.MultiHeadAttention(Wq=Wq, Wk=Wk, Wv=weights(rng, 12, 3, 12, 3))(randn(rng, 3, 12))


# ---- keys rotated as the KV cache appends them --------------------------------


def test_kv_append_rotates_keys(rng):
    """KVCache.append(rope=...) stores attn.rope(k) at positions start + t:
    the same cache as rotating first; a decode step's key equals the prefill's."""
    G, d, P, T = 2, 16, 21, 5
    k = randn(rng, G, P + T, d, dtype=np.float32)
    v = randn(rng, G, P + T, d, dtype=np.float32)
    table = np.array([3, 1, 0, 2])
    rp = dict(base=500000.0, style="gptj", rotary_dim=8)
    a = attn.KVCache(4, 16, G, d, dtype="bfloat16")
    a.append(table, 0, k, v, rope=rp)
    b = attn.KVCache(4, 16, G, d, dtype="bfloat16")
    b.append(table, 0, attn.rope(k, np.arange(P + T), **rp), v)
    c = attn.KVCache(4, 16, G, d, dtype="bfloat16")
    c.append(table, 0, k[:, :P], v[:, :P], rope=rp)
    for t in range(P, P + T):
        c.append(table, t, k[:, t:t + 1], v[:, t:t + 1], rope=rp)
    ka, va = a.read(table, P + T)
    for other in (b, c):
        ko, vo = other.read(table, P + T)
        np.testing.assert_array_equal(ka, ko)
        np.testing.assert_array_equal(va, vo)
    # Batched form: two sequences at different starts.
    kb = randn(rng, 2, G, 3, d, dtype=np.float32)
    tables = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    e = attn.KVCache(4, 16, G, d)
    e.append(tables, [4, 9], kb, kb, rope=rp)
    k0, _ = e.read(tables[0], 7)
    np.testing.assert_array_equal(k0[:, 4:7], attn.rope(kb[0], np.arange(4, 7), **rp))
