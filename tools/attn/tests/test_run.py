"""`attn run`: arrays written with NumPy, results compared with NumPy
computed here from the formulas (float64), and errors that name the file,
the array and the dimension."""
import numpy as np
import pytest

RNG = np.random.default_rng(2024)
F32 = dict(rtol=1e-4, atol=2e-5)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def visible(B, Nq, Nkv, causal="none", key_lengths=None):
    """vis[b, i, j]: key j visible to query i of batch b (no mask)."""
    L = np.full(B, Nkv) if key_lengths is None else np.asarray(key_lengths)
    i = np.arange(Nq)[:, None]
    j = np.arange(Nkv)[None, :]
    vis = np.zeros((B, Nq, Nkv), dtype=bool)
    for b in range(B):
        v = j < L[b]
        if causal == "top-left":
            v = v & (j <= i)
        elif causal == "bottom-right":
            v = v & (j <= i + L[b] - Nq)
        vis[b] = v
    return vis


def mix(z):
    z = (z + np.uint64(0x9E3779B97F4A7C15))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def keep_mask(seed, B, H, Nq, Nkv, p):
    """attn_dropout_keep for every (b, h, i, j), from the header's formula."""
    with np.errstate(over="ignore"):
        b, h, i, j = np.meshgrid(np.arange(B, dtype=np.uint64), np.arange(H, dtype=np.uint64),
                                 np.arange(Nq, dtype=np.uint64), np.arange(Nkv, dtype=np.uint64),
                                 indexing="ij")
        x = mix(mix(mix(mix(np.uint64(seed) ^ b) ^ h) ^ i) ^ j)
    u = x >> np.uint64(40)
    thr = np.uint64(int(float(np.float32(p)) * 16777216.0))
    return u >= thr


def sdpa_ref(q, k, v, causal="none", mask=None, key_lengths=None, scale=None, dropout=0.0,
             seed=0):
    """q (B,H,Nq,d), k (B,G,Nkv,d), v (B,G,Nkv,dv) -> out, lse, weights."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    B, H, Nq, d = q.shape
    G, Nkv = k.shape[1], k.shape[2]
    k = np.repeat(k, H // G, axis=1)
    v = np.repeat(v, H // G, axis=1)
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if mask is not None:
        s = s + np.broadcast_to(np.asarray(mask, dtype=np.float64).reshape(
            (1,) * (4 - np.ndim(mask)) + np.shape(mask)), s.shape)
    vis = visible(B, Nq, Nkv, causal, key_lengths)[:, None] & ~np.isneginf(s)
    s = np.where(vis, s, -np.inf)
    w = softmax(s)
    with np.errstate(divide="ignore"):
        m = np.max(s, axis=-1, keepdims=True)
        mm = np.where(np.isfinite(m), m, 0.0)
        lse = (np.log(np.exp(s - mm).sum(-1, keepdims=True)) + mm)[..., 0]
    if dropout > 0:
        w = w * keep_mask(seed, B, H, Nq, Nkv, dropout) / (1.0 - float(np.float32(dropout)))
    return np.einsum("bhij,bhjf->bhif", w, v), lse, w


def save(tmp_path, **arrays):
    paths = {}
    for name, arr in arrays.items():
        p = tmp_path / ("%s.npy" % name)
        np.save(p, arr)
        paths[name] = p
    return paths


def run(attn, tmp_path, op, *extra, rc=0, **arrays):
    args = ["run", op]
    for name, p in save(tmp_path, **arrays).items():
        args += ["--" + name.replace("key_lengths", "key-lengths"), p]
    out = tmp_path / "out.npy"
    p = attn(*(args + list(extra) + ["-o", out]), rc=rc)
    return (np.load(out) if rc == 0 else None), p


# ---- softmax and layer norm ---------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (3, 9), (2, 3, 5), (2, 2, 3, 17)])
def test_softmax(attn, tmp_path, shape):
    x = rand(*shape, scale=3.0)
    got, _ = run(attn, tmp_path, "softmax", x=x)
    np.testing.assert_allclose(got, softmax(x), **F32)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)


def test_softmax_fortran_float64(attn, tmp_path):
    x = np.asfortranarray(RNG.standard_normal((6, 11)))
    got, _ = run(attn, tmp_path, "softmax", x=x)
    np.testing.assert_allclose(got, softmax(x.astype(np.float32)), **F32)


@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm(attn, tmp_path, affine):
    x = rand(2, 5, 16, scale=2.0) + 3.0
    arrays = dict(x=x)
    g, bta = rand(16) + 1.0, rand(16)
    if affine:
        arrays.update(gamma=g, beta=bta)
    got, _ = run(attn, tmp_path, "layer-norm", "--eps", "1e-3", **arrays)
    x64 = x.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    var = ((x64 - mu) ** 2).mean(-1, keepdims=True)
    want = (x64 - mu) / np.sqrt(var + 1e-3)
    if affine:
        want = want * g + bta
    np.testing.assert_allclose(got, want, **F32)


# ---- single-head self and cross attention --------------------------------------


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("causal", ["none", "top-left"])
def test_self_attention(attn, tmp_path, batched, causal):
    B, N, D, HS, HSv = 3, 10, 12, 8, 6
    x = rand(B, N, D) if batched else rand(N, D)
    Wq, Wk, Wv = rand(D, HS, scale=0.3), rand(D, HS, scale=0.3), rand(D, HSv, scale=0.3)
    got, _ = run(attn, tmp_path, "self", "--causal", causal, x=x, Wq=Wq, Wk=Wk, Wv=Wv)
    xb = x if batched else x[None]
    q, k, v = (xb.astype(np.float64) @ W for W in (Wq, Wk, Wv))
    want = sdpa_ref(q[:, None], k[:, None], v[:, None], causal=causal)[0][:, 0]
    assert got.shape == ((B, N, HSv) if batched else (N, HSv))
    np.testing.assert_allclose(got, want if batched else want[0], **F32)


def test_self_attention_torch_layout(attn, tmp_path):
    """--layout torch: weights given as (out, in), as nn.Linear stores them."""
    N, D, HS = 7, 10, 4
    x = rand(N, D)
    Wq, Wk, Wv = rand(D, HS), rand(D, HS), rand(D, HS)
    a, _ = run(attn, tmp_path, "self", x=x, Wq=Wq, Wk=Wk, Wv=Wv)
    b, _ = run(attn, tmp_path, "self", "--layout", "torch", x=x,
               Wq=np.ascontiguousarray(Wq.T), Wk=np.ascontiguousarray(Wk.T),
               Wv=np.ascontiguousarray(Wv.T))
    # The two layouts reach the BLAS as different transposes, so its kernels may
    # sum in another order: equal to a few float32 roundings, not bit for bit.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Without the flag, (HS, D) weights do not fit x (N, D): the error says so.
    _, p = run(attn, tmp_path, "self", x=x, Wq=np.ascontiguousarray(Wq.T), Wk=Wk, Wv=Wv, rc=3)
    assert "Wq (" in p.stderr and "Wq.npy" in p.stderr and "dimension 0 is 4" in p.stderr


def test_cross_attention_key_lengths_scale(attn, tmp_path):
    B, Nq, Nkv, Dq, Dkv, HS = 2, 5, 9, 6, 10, 4
    xq, xkv = rand(B, Nq, Dq), rand(B, Nkv, Dkv)
    Wq, Wk, Wv = rand(Dq, HS), rand(Dkv, HS), rand(Dkv, 7)
    L = np.array([9, 4], dtype=np.int64)
    got, _ = run(attn, tmp_path, "cross", "--scale", "0.3", xq=xq, xkv=xkv, Wq=Wq, Wk=Wk, Wv=Wv,
                 key_lengths=L)
    q, k, v = xq.astype(np.float64) @ Wq, xkv.astype(np.float64) @ Wk, xkv.astype(np.float64) @ Wv
    want = sdpa_ref(q[:, None], k[:, None], v[:, None], key_lengths=L, scale=0.3)[0][:, 0]
    np.testing.assert_allclose(got, want, **F32)


# ---- multi-head ---------------------------------------------------------------


def mha_ref(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, **kw):
    """Per-head stacks W (NH, D, HS), biases (NH, HS)."""
    xq, xkv = xq.astype(np.float64), xkv.astype(np.float64)
    q = np.einsum("bic,hce->bhie", xq, Wq) + bq[None, :, None]
    k = np.einsum("bjc,hce->bhje", xkv, Wk) + bk[None, :, None]
    v = np.einsum("bjc,hcf->bhjf", xkv, Wv) + bv[None, :, None]
    a = sdpa_ref(q, k, v, **kw)[0]
    B, NH, Nq, HSv = a.shape
    cat = a.transpose(0, 2, 1, 3).reshape(B, Nq, NH * HSv)
    return cat @ Wo + bo if Wo is not None else cat


def test_mha_fused_causal_with_npz(attn, tmp_path):
    B, N, D, NH = 2, 12, 16, 4
    x = rand(B, N, D)
    Wqkv, bqkv, Wo, bo = rand(D, 3 * D, scale=0.3), rand(3 * D), rand(D, D, scale=0.3), rand(D)
    np.savez(tmp_path / "m.npz", x=x, Wqkv=Wqkv, bqkv=bqkv, Wo=Wo, bo=bo)
    out = tmp_path / "o.npy"
    attn("run", "mha", "--npz", tmp_path / "m.npz", "--heads", NH, "--causal", "top-left",
         "-o", out)
    HS = D // NH
    split = lambda W: W.reshape(D, NH, HS).transpose(1, 0, 2)
    Wq, Wk, Wv = (split(Wqkv[:, t * D:(t + 1) * D]) for t in range(3))
    bq, bk, bv = (bqkv[t * D:(t + 1) * D].reshape(NH, HS) for t in range(3))
    want = mha_ref(x, x, Wq, Wk, Wv, bq, bk, bv, Wo, bo, causal="top-left")
    np.testing.assert_allclose(np.load(out), want, **F32)


def test_mha_per_head_cross_fortran(attn, tmp_path):
    """Per-head stacks, cross-attention, weights saved transposed (Fortran)."""
    B, Nq, Nkv, Dq, Dkv, NH, HS, HSv, Dout = 2, 4, 7, 8, 6, 3, 5, 4, 9
    xq, xkv = rand(B, Nq, Dq), rand(B, Nkv, Dkv)
    Wq, Wk, Wv = rand(NH, Dq, HS), rand(NH, Dkv, HS), rand(NH, Dkv, HSv)
    bq, bk, bv = rand(NH, HS), rand(NH, HS), rand(NH, HSv)
    Wo, bo = rand(NH * HSv, Dout), rand(Dout)
    np.save(tmp_path / "WoT.npy", Wo.T.T)  # same values
    np.save(tmp_path / "Wo_f.npy", np.asfortranarray(Wo))
    got, _ = run(attn, tmp_path, "mha", "--Wo", tmp_path / "Wo_f.npy", xq=xq, xkv=xkv, Wq=Wq,
                 Wk=Wk, Wv=Wv, bq=bq, bk=bk, bv=bv, bo=bo)
    want = mha_ref(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo)
    assert got.shape == (B, Nq, Dout)
    np.testing.assert_allclose(got, want, **F32)


def test_mha_without_wo_concatenates(attn, tmp_path):
    N, D, NH = 6, 8, 2
    x = rand(N, D)
    Wq, Wk, Wv = rand(NH, D, 4), rand(NH, D, 4), rand(NH, D, 3)
    got, _ = run(attn, tmp_path, "mha", x=x, Wq=Wq, Wk=Wk, Wv=Wv)
    z = lambda n, m: np.zeros((n, m))
    want = mha_ref(x[None], x[None], Wq, Wk, Wv, z(NH, 4), z(NH, 4), z(NH, 3), None, 0)[0]
    assert got.shape == (N, NH * 3)
    np.testing.assert_allclose(got, want, **F32)


def test_mha_torch_layout_matches_pytorch(attn, tmp_path):
    """PyTorch's own MultiheadAttention, its weights saved as they are."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    D, NH, N, B = 16, 4, 9, 2
    m = torch.nn.MultiheadAttention(D, NH, batch_first=True)
    x = torch.randn(B, N, D)
    causal = torch.triu(torch.ones(N, N, dtype=torch.bool), 1)
    with torch.no_grad():
        want = m(x, x, x, attn_mask=causal, need_weights=False)[0].numpy()
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    np.savez(tmp_path / "t.npz", x=x.numpy(), Wqkv=sd["in_proj_weight"], bqkv=sd["in_proj_bias"],
             Wo=sd["out_proj.weight"], bo=sd["out_proj.bias"])
    out = tmp_path / "o.npy"
    attn("run", "mha", "--npz", tmp_path / "t.npz", "--heads", NH, "--layout", "torch",
         "--causal", "top-left", "-o", out)
    np.testing.assert_allclose(np.load(out), want, rtol=1e-4, atol=1e-5)


# ---- sdpa ----------------------------------------------------------------------


@pytest.mark.parametrize("causal", ["none", "top-left", "bottom-right"])
def test_sdpa_gqa_causal(attn, tmp_path, causal):
    B, H, G, Nq, Nkv, d, dv = 2, 4, 2, 5, 8, 16, 12
    q, k, v = rand(B, H, Nq, d), rand(B, G, Nkv, d), rand(B, G, Nkv, dv)
    got, _ = run(attn, tmp_path, "sdpa", "--causal", causal, q=q, k=k, v=v)
    np.testing.assert_allclose(got, sdpa_ref(q, k, v, causal=causal)[0], **F32)


def test_sdpa_mask_key_lengths_lse_weights(attn, tmp_path):
    B, H, Nq, Nkv, d = 2, 3, 4, 6, 8
    q, k, v = rand(B, H, Nq, d), rand(B, H, Nkv, d), rand(B, H, Nkv, d)
    mask = rand(Nq, Nkv)  # broadcast over B and H
    mask[1, :] = -np.inf  # row 1 sees nothing: zeros, lse -inf
    mask[2, 3] = -1e9     # finite: still visible
    L = np.array([6.0, 3.0])  # float key lengths are accepted when integral
    args = ["--mask", tmp_path / "mask.npy", "--key-lengths", tmp_path / "L.npy",
            "--lse-out", tmp_path / "lse.npy", "--weights-out", tmp_path / "w.npy"]
    np.save(tmp_path / "mask.npy", mask)
    np.save(tmp_path / "L.npy", L)
    got, _ = run(attn, tmp_path, "sdpa", *args, q=q, k=k, v=v)
    want, lse, w = sdpa_ref(q, k, v, mask=mask, key_lengths=L.astype(int))
    np.testing.assert_allclose(got, want, **F32)
    assert np.all(got[:, :, 1] == 0.0)
    np.testing.assert_allclose(np.load(tmp_path / "lse.npy"), lse, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "w.npy"), w, **F32)


def test_sdpa_rank3_and_bigendian_float64(attn, tmp_path):
    H, N, d = 2, 7, 8
    q, k, v = rand(H, N, d), rand(H, N, d), rand(H, N, d)
    got, _ = run(attn, tmp_path, "sdpa", q=q.astype(">f8"), k=k.astype(">f4"), v=v)
    assert got.shape == (H, N, d)
    np.testing.assert_allclose(got, sdpa_ref(q[None], k[None], v[None])[0][0], **F32)


def test_sdpa_dropout(attn, tmp_path):
    """V = identity: the output is the dropped, rescaled weight matrix, so the
    keep pattern must match the documented hash exactly."""
    B, H, N, p, seed = 1, 2, 16, 0.3, 1234
    q, k = rand(B, H, N, 8), rand(B, H, N, 8)
    v = np.broadcast_to(np.eye(N, dtype=np.float32), (B, H, N, N)).copy()
    got, _ = run(attn, tmp_path, "sdpa", "--dropout", p, "--seed", seed, q=q, k=k, v=v)
    want = sdpa_ref(q, k, v, dropout=p, seed=seed)[0]
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, **F32)
    assert 0.15 < np.mean(want == 0) < 0.45


# ---- errors ---------------------------------------------------------------------


def test_error_names_file_array_dimension(attn, tmp_path):
    q, k, v = rand(1, 2, 4, 8), rand(1, 2, 4, 6), rand(1, 2, 4, 8)
    _, p = run(attn, tmp_path, "sdpa", q=q, k=k, v=v, rc=3)
    assert "head size" in p.stderr and "k.npy" in p.stderr and "6" in p.stderr
    W = rand(2, 8, 3)
    _, p = run(attn, tmp_path, "mha", x=rand(5, 8), Wq=W, Wk=rand(3, 8, 3), Wv=W, rc=3)
    assert "Wk (" in p.stderr and "Wk.npy" in p.stderr and "dimension 0 is 3" in p.stderr
    assert "number of heads" in p.stderr
    _, p = run(attn, tmp_path, "sdpa", q=q, k=rand(1, 2, 4, 8), v=v,
               key_lengths=np.array([9]), rc=3)
    assert "key_lengths" in p.stderr and "outside 0..Nkv=4" in p.stderr
    _, p = run(attn, tmp_path, "sdpa", q=q, k=rand(1, 2, 4, 8), v=v, mask=rand(3, 4), rc=3)
    assert "mask" in p.stderr and "Nq=4" in p.stderr


@pytest.mark.parametrize("args,message", [
    (["run"], "needs an operation"),
    (["run", "frobnicate"], "unknown operation"),
    (["run", "softmax", "--x"], "--x needs a file"),
    (["run", "softmax", "--q", "a.npy", "-o", "o.npy"], "softmax does not take --q"),
    (["run", "sdpa", "--causal", "diagonal", "-o", "o.npy"], "--causal takes"),
    (["run", "sdpa", "--dropout", "1.0", "-o", "o.npy"], "--dropout needs P in [0, 1)"),
    (["run", "mha", "--layout", "colmajor", "-o", "o.npy"], "--layout takes xw or torch"),
    (["run", "softmax", "--bogus", "1"], "unknown option '--bogus'"),
    (["run", "sdpa", "--q", "x.npy"], "needs -o"),
    (["frobnicate"], "unknown command"),
    (["demo", "--heads", "5"], "not a multiple of --heads"),
    (["explain", "--seq", "0"], "--seq needs a positive integer"),
    (["bench", "--filter", "nothing-matches"], "no case matches"),
])
def test_usage_errors(attn, args, message):
    p = attn(*args, rc=2)
    assert message in p.stderr


def test_fused_needs_heads(attn, tmp_path):
    _, p = run(attn, tmp_path, "mha", x=rand(4, 8), Wqkv=rand(8, 24), rc=2)
    assert "--heads" in p.stderr


def test_library_error_exit_1(attn, tmp_path):
    """A library failure (here an invalid ATTN_ISA) exits 1 with its message."""
    np.save(tmp_path / "x.npy", rand(1, 1, 2, 4))
    p = attn("run", "sdpa", "--q", tmp_path / "x.npy", "--k", tmp_path / "x.npy", "--v",
             tmp_path / "x.npy", "-o", tmp_path / "o.npy", rc=1, env={"ATTN_ISA": "bogus"})
    assert "ATTN_ISA=bogus" in p.stderr and "q = " in p.stderr and "x.npy" in p.stderr
    assert not (tmp_path / "o.npy").exists()


def test_mha_per_head_torch_layout_and_npz_override(attn, tmp_path):
    """Per-head stacks (NH, HS, D) and Wo (Dout, NH*HSv) in PyTorch's layout;
    an explicit --x wins over the --npz member of the same name."""
    N, D, NH, HS = 5, 6, 2, 3
    x, x2 = rand(N, D), rand(N, D)
    Wq, Wk, Wv, Wo = rand(NH, D, HS), rand(NH, D, HS), rand(NH, D, HS), rand(NH * HS, D)
    tr = lambda W: np.ascontiguousarray(np.swapaxes(W, -1, -2))
    np.savez(tmp_path / "w.npz", x=x, Wq=tr(Wq), Wk=tr(Wk), Wv=tr(Wv), Wo=tr(Wo))
    np.save(tmp_path / "x2.npy", x2)
    out = tmp_path / "o.npy"
    attn("run", "mha", "--npz", tmp_path / "w.npz", "--x", tmp_path / "x2.npy", "--layout",
         "torch", "-o", out)
    z = np.zeros((NH, HS))
    want = mha_ref(x2[None], x2[None], Wq, Wk, Wv, z, z, z, Wo, np.zeros(D))[0]
    np.testing.assert_allclose(np.load(out), want, **F32)


def test_self_key_lengths_scalar_int32(attn, tmp_path):
    """For a single sequence (B = 1) the key length may be a 0-d int array."""
    N, D, HS = 6, 4, 4
    x, Wq, Wk, Wv = rand(N, D), rand(D, HS), rand(D, HS), rand(D, HS)
    np.save(tmp_path / "L.npy", np.array(3, dtype=np.int32))
    got, _ = run(attn, tmp_path, "self", "--key-lengths", tmp_path / "L.npy", x=x, Wq=Wq, Wk=Wk,
                 Wv=Wv)
    q, k, v = (x.astype(np.float64) @ W for W in (Wq, Wk, Wv))
    want = sdpa_ref(q[None, None], k[None, None], v[None, None], key_lengths=[3])[0][0, 0]
    np.testing.assert_allclose(got, want, **F32)
    np.save(tmp_path / "L.npy", np.array([2.5]))
    _, p = run(attn, tmp_path, "self", "--key-lengths", tmp_path / "L.npy", x=x, Wq=Wq, Wk=Wk,
               Wv=Wv, rc=3)
    assert "is not an integer" in p.stderr
