"""attn.torch.scaled_dot_product_attention against PyTorch's own composition
in float64 (torch_ref.sdpa, autograd for the gradients): every mask kind,
causal, GQA, scale, ranks, dtypes, strides, dropout, threads and errors.
Tolerances: torch_ref (rtol 1e-4, atol 2e-5; attn computes in float32)."""

import subprocess
import sys
import threading

import numpy as np
import pytest

import attn
from torch_ref import close
import torch_ref


@pytest.fixture(scope="module")
def T(torch):
    import attn.torch as T

    return T


def rand(torch, gen, *shape, dtype=None, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=dtype or torch.float64) * scale


@pytest.fixture
def gen(torch, rng):
    g = torch.Generator()
    g.manual_seed(int(rng.integers(1 << 62)))
    return g


SHAPES = [
    # B, H, L, S, E, Ev
    (1, 1, 1, 1, 1, 1),
    (2, 3, 7, 7, 8, 8),
    (1, 2, 5, 13, 16, 4),
    (2, 2, 13, 5, 3, 11),
    (1, 4, 64, 64, 32, 32),
    (2, 1, 67, 131, 40, 72),
]


def qkv(torch, gen, B, H, L, S, E, Ev, Hkv=None, dtype=None):
    Hkv = H if Hkv is None else Hkv
    return (rand(torch, gen, B, H, L, E, dtype=dtype), rand(torch, gen, B, Hkv, S, E, dtype=dtype),
            rand(torch, gen, B, Hkv, S, Ev, dtype=dtype))


def test_import_attn_does_not_import_torch():
    code = "import sys, attn; assert 'torch' not in sys.modules; import attn.torch; " \
           "assert 'torch' in sys.modules; print(attn.torch.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "attn.torch"


def test_lazy_attribute(T):
    assert attn.torch is T
    with pytest.raises(AttributeError):
        attn.no_such_thing


@pytest.mark.parametrize("B,H,L,S,E,Ev", SHAPES)
def test_forward_plain(torch, T, gen, B, H, L, S, E, Ev):
    q, k, v = qkv(torch, gen, B, H, L, S, E, Ev)
    out = T.scaled_dot_product_attention(q, k, v)
    assert out.dtype == torch.float64
    close(out, torch_ref.sdpa(q, k, v))


@pytest.mark.parametrize("B,H,L,S,E,Ev", SHAPES)
def test_forward_causal(torch, T, gen, B, H, L, S, E, Ev):
    q, k, v = qkv(torch, gen, B, H, L, S, E, Ev)
    out = T.scaled_dot_product_attention(q, k, v, is_causal=True)
    close(out, torch_ref.sdpa(q, k, v, is_causal=True))
    if L > 1 and S > 1:
        assert (out - torch_ref.sdpa(q, k, v)).abs().max() > 1e-3


def masks(torch, gen, B, H, L, S):
    """Every mask kind: bool (True takes part) and float, full and broadcast,
    with some rows fully hidden."""
    r = torch.rand(B, H, L, S, generator=gen)
    keep = r > 0.3
    keep[..., 0, :] = False  # query 0 sees nothing: its row is zeros
    fl = torch.randn(B, H, L, S, generator=gen, dtype=torch.float64)
    fl_inf = fl.masked_fill(r < 0.25, float("-inf"))
    return {
        "bool_full": keep,
        "bool_LS": keep[0, 0],
        "bool_B1LS": keep[:, :1],
        "bool_H11S": keep[0, :, :1, :],
        "bool_causal": torch.ones(L, S, dtype=torch.bool).tril(),
        "float_full": fl,
        "float_LS": fl[0, 0],
        "float_1H1S": fl[:1, :, :1, :],
        "float_inf": fl_inf,
        "float_causal": torch.zeros(L, S, dtype=torch.float64).masked_fill(
            torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf")),
        "float_all_inf": torch.full((L, S), float("-inf"), dtype=torch.float64),
    }


MASK_KINDS = ["bool_full", "bool_LS", "bool_B1LS", "bool_H11S", "bool_causal", "float_full",
              "float_LS", "float_1H1S", "float_inf", "float_causal", "float_all_inf"]


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("B,H,L,S,E,Ev", [(2, 3, 7, 7, 8, 8), (1, 2, 5, 13, 16, 4),
                                         (2, 2, 17, 9, 8, 8)])
def test_forward_masks(torch, T, gen, kind, B, H, L, S, E, Ev):
    q, k, v = qkv(torch, gen, B, H, L, S, E, Ev)
    m = masks(torch, gen, B, H, L, S)[kind]
    out = T.scaled_dot_product_attention(q, k, v, attn_mask=m)
    ref = torch_ref.sdpa(q, k, v, attn_mask=m)
    close(out, ref)
    if kind == "float_all_inf":
        assert torch.equal(out, torch.zeros_like(out))
    # the mask together with is_causal: both apply
    close(T.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=True),
          torch_ref.sdpa(q, k, v, attn_mask=m, is_causal=True))


def test_empty_rows_are_zero(torch, T, gen):
    q, k, v = qkv(torch, gen, 2, 2, 6, 5, 4, 4)
    keep = torch.ones(6, 5, dtype=torch.bool)
    keep[2] = False
    out = T.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    assert out[:, :, 1].abs().min() > 0


@pytest.mark.parametrize("H,Hkv", [(4, 2), (6, 1), (8, 8), (6, 3)])
def test_forward_gqa(torch, T, gen, H, Hkv):
    q, k, v = qkv(torch, gen, 2, H, 9, 11, 8, 8, Hkv=Hkv)
    out = T.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    close(out, torch_ref.sdpa(q, k, v, enable_gqa=True))
    m = torch.rand(H, 9, 11, generator=gen) > 0.4
    close(T.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=True, enable_gqa=True),
          torch_ref.sdpa(q, k, v, attn_mask=m, is_causal=True, enable_gqa=True))


@pytest.mark.parametrize("scale", [0.05, 1.0, 0.3333])
def test_forward_scale(torch, T, gen, scale):
    q, k, v = qkv(torch, gen, 2, 2, 8, 10, 16, 16)
    out = T.scaled_dot_product_attention(q, k, v, scale=scale)
    close(out, torch_ref.sdpa(q, k, v, scale=scale))
    assert (out - torch_ref.sdpa(q, k, v)).abs().max() > 1e-3


@pytest.mark.parametrize("shape_q,shape_kv", [((7, 8), (5, 8)), ((3, 7, 8), (3, 5, 8)),
                                              ((2, 3, 4, 7, 8), (2, 3, 4, 5, 8))])
def test_ranks(torch, T, gen, shape_q, shape_kv):
    q = rand(torch, gen, *shape_q)
    k, v = rand(torch, gen, *shape_kv), rand(torch, gen, *shape_kv)
    m = torch.rand(shape_q[-2], shape_kv[-2], generator=gen) > 0.3
    m[:, 0] = True
    out = T.scaled_dot_product_attention(q, k, v, attn_mask=m)
    assert out.shape == q.shape
    close(out, torch_ref.sdpa(q, k, v, attn_mask=m))
    close(T.scaled_dot_product_attention(q, k, v, is_causal=True),
          torch_ref.sdpa(q, k, v, is_causal=True))
    if len(shape_q) == 5:  # a mask with the leading dimensions, broadcast over one
        m5 = torch.rand(2, 1, 4, shape_q[-2], shape_kv[-2], generator=gen) > 0.3
        close(T.scaled_dot_product_attention(q, k, v, attn_mask=m5),
              torch_ref.sdpa(q, k, v, attn_mask=m5))


def test_dtypes(torch, T, gen):
    q, k, v = qkv(torch, gen, 2, 2, 9, 9, 8, 8)
    ref = torch_ref.sdpa(q, k, v)
    o32 = T.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert o32.dtype == torch.float32
    close(o32, ref)
    o64 = T.scaled_dot_product_attention(q, k, v)
    assert o64.dtype == torch.float64
    # float64 inputs are computed in float32: the same numbers as float32 inputs
    assert torch.equal(o64, o32.double())
    # bfloat16: widened to float32 exactly, computed, rounded once at the end
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    ob = T.scaled_dot_product_attention(qb, kb, vb)
    assert ob.dtype == torch.bfloat16
    o_wide = T.scaled_dot_product_attention(qb.float(), kb.float(), vb.float())
    assert torch.equal(ob, o_wide.bfloat16())
    close(ob, torch_ref.sdpa(qb.double(), kb.double(), vb.double()), rtol=1e-2, atol=1e-2)
    # a float32 mask with float64 data, a bfloat16 mask with bfloat16 data
    fm = torch.randn(9, 9, generator=gen)
    close(T.scaled_dot_product_attention(q, k, v, attn_mask=fm),
          torch_ref.sdpa(q, k, v, attn_mask=fm.double()))
    assert T.scaled_dot_product_attention(qb, kb, vb, attn_mask=fm.bfloat16()).dtype == \
        torch.bfloat16


def test_strided_inputs(torch, T, gen):
    """Transposed, sliced and expanded tensors give the contiguous result."""
    base = torch.randn(2, 9, 3, 16, generator=gen)  # (B, L, H, E) memory order
    q = base.transpose(1, 2)  # (B, H, L, E), not contiguous
    kb = torch.randn(2, 3, 11, 40, generator=gen)
    k = kb[..., 4:20]  # sliced last axis
    v = torch.randn(2, 1, 11, 8, generator=gen).expand(2, 3, 11, 8)  # stride 0 on H
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous())
    out = T.scaled_dot_product_attention(q, k, v)
    ref = T.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
    close(out, ref, rtol=1e-6, atol=1e-6)
    close(out, torch_ref.sdpa(q.double(), k.double(), v.double()))


def test_requires_grad_forward(torch, T, gen):
    q, k, v = (t.float().requires_grad_(True) for t in qkv(torch, gen, 1, 2, 5, 5, 4, 4))
    out = T.scaled_dot_product_attention(q, k, v)
    assert out.requires_grad and out.grad_fn is not None
    with torch.no_grad():
        out2 = T.scaled_dot_product_attention(q, k, v)
    assert not out2.requires_grad
    assert torch.equal(out.detach(), out2)


def test_dropout_seed_from_torch(torch, T, gen):
    q, k, v = qkv(torch, gen, 2, 3, 8, 12, 8, 8, dtype=torch.float32)
    p = 0.3
    torch.manual_seed(123)
    a = T.scaled_dot_product_attention(q, k, v, dropout_p=p)
    torch.manual_seed(123)
    b = T.scaled_dot_product_attention(q, k, v, dropout_p=p)
    c = T.scaled_dot_product_attention(q, k, v, dropout_p=p)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)
    # the seed is the next int64 of torch's default generator; the pattern is
    # attn.dropout_keep's, matched by the vectorised grid and the composition
    torch.manual_seed(123)
    seed = int(torch.empty((), dtype=torch.int64).random_())
    np.testing.assert_array_equal(
        a.numpy(), attn.sdpa(q.numpy(), k.numpy(), v.numpy(), dropout_p=p, seed=seed))
    keep = T.dropout_keep_grid(seed, 2, 3, 8, 12, p)
    for (b_, h, i, j) in [(0, 0, 0, 0), (1, 2, 7, 11), (1, 0, 3, 5), (0, 1, 6, 2)]:
        assert keep[b_, h, i, j] == attn.dropout_keep(seed, b_, h, i, j, p)
    ref = torch_ref.sdpa(q.double(), k.double(), v.double(), keep=torch.from_numpy(keep),
                         dropout_p=p)
    close(a, ref)
    dropped = 1.0 - keep.mean()
    assert 0.2 < dropped < 0.4


def test_dropout_keep_grid_matches_c(T, rng):
    seed = int(rng.integers(1 << 63))
    for p in (0.1, 0.5, 0.9):
        g = T.dropout_keep_grid(seed, 2, 2, 3, 5, p)
        for idx in np.ndindex(g.shape):
            assert g[idx] == attn.dropout_keep(seed, *idx, p)
    assert T.dropout_keep_grid(seed, 1, 1, 2, 2, 0.0).all()


def test_threads_follow_torch(torch, T, gen):
    q, k, v = qkv(torch, gen, 2, 4, 96, 96, 32, 32, dtype=torch.float32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert T.get_num_threads() == 2
        torch.set_num_threads(1)
        assert T.get_num_threads() == 1
        T.set_num_threads(3)
        assert T.get_num_threads() == 3
        T.set_num_threads(None)
        assert T.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)
        T.set_num_threads(None)
    dout = torch.randn(2, 4, 96, 32, generator=gen)

    def run(nt):
        return torch_ref.grads(lambda a, b, c: T.scaled_dot_product_attention(
            a, b, c, is_causal=True, num_threads=nt), [q, k, v], dout)

    ref, gref = run(1)
    for nt in (2, 3):  # forward and gradients bit for bit the same
        out, g = run(nt)
        assert torch.equal(out, ref)
        for a, b in zip(g, gref):
            assert torch.equal(a, b)


def test_concurrent_calls_inside_torch_threads(torch, T, gen):
    """Several Python threads call attn while torch runs its own parallel ops
    (its intra-op pool) at 2 threads; every result equals the serial one."""
    q, k, v = qkv(torch, gen, 2, 4, 80, 80, 32, 32, dtype=torch.float32)
    ref = T.scaled_dot_product_attention(q, k, v, is_causal=True, num_threads=1)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    errors, results = [], []

    def work():
        try:
            for _ in range(5):
                big = torch.randn(256, 256) @ torch.randn(256, 256)  # torch's pool busy
                results.append(T.scaled_dot_product_attention(q, k, v, is_causal=True))
                assert torch.isfinite(big).all()
        except Exception as e:  # reported below
            errors.append(e)

    try:
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        torch.set_num_threads(old)
    assert not errors, errors
    assert len(results) == 20
    for r in results:
        assert torch.equal(r, ref)


# ---- errors ------------------------------------------------------------------


def test_errors(torch, T, gen):
    q, k, v = qkv(torch, gen, 1, 2, 4, 5, 8, 8, dtype=torch.float32)
    f = T.scaled_dot_product_attention
    with pytest.raises(TypeError, match="query must be a torch.Tensor"):
        f(q.numpy(), k, v)
    with pytest.raises(TypeError, match="key has dtype torch.float16"):
        f(q, k.half(), v)
    with pytest.raises(TypeError, match="value has dtype torch.int64"):
        f(q, k, v.long())
    with pytest.raises(TypeError, match="one dtype"):
        f(q, k.double(), v)
    with pytest.raises(ValueError, match="query is on device meta"):
        f(torch.empty(1, 2, 4, 8, device="meta"), k, v)
    with pytest.raises(TypeError, match="layout"):
        f(q.to_sparse(), k, v)
    with pytest.raises(ValueError, match="head size"):
        f(q, k[..., :4], v)
    with pytest.raises(ValueError, match=r"value.shape\[-2\]=4 but key.shape\[-2\]=5"):
        f(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="same rank"):
        f(q, k[0], v[0])
    with pytest.raises(ValueError, match="enable_gqa=True"):
        f(q, k[:, :1], v[:, :1])
    with pytest.raises(ValueError, match="multiple"):
        f(torch.randn(1, 3, 4, 8), k, v, enable_gqa=True)
    with pytest.raises(ValueError, match="attn_mask of shape"):
        f(q, k, v, attn_mask=torch.ones(4, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask of shape"):
        f(q, k, v, attn_mask=torch.ones(1, 1, 1, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask has dtype torch.int32"):
        f(q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match="dropout_p"):
        f(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match="num_threads"):
        f(q, k, v, num_threads=0)
    with pytest.raises(ValueError, match="set_num_threads"):
        T.set_num_threads(0)


# ---- gradients ---------------------------------------------------------------


def check_grads(torch, T, gen, q, k, v, mask=None, grad_mask=False, **kw):
    """attn.torch's gradients of (out * dout).sum() equal PyTorch autograd's
    through the float64 composition, for q, k, v (and a float mask)."""
    dout = torch.randn(q.shape[:-1] + (v.shape[-1],), generator=gen, dtype=torch.float64)
    m = mask
    if grad_mask:
        m = mask.detach().clone().requires_grad_(True)

    def ours(q_, k_, v_):
        return T.scaled_dot_product_attention(q_, k_, v_, attn_mask=m, **kw)

    out, g = torch_ref.grads(ours, [q, k, v], dout)
    m_ref = None if mask is None else mask.detach().clone().requires_grad_(grad_mask)

    def ref(q_, k_, v_):
        return torch_ref.sdpa(q_, k_, v_, attn_mask=m_ref, **kw)

    out_ref, g_ref = torch_ref.grads(ref, [q, k, v], dout)
    close(out, out_ref)
    # absolute tolerance relative to the gradient's size: a large scale
    # sharpens the softmax and grows gradients and their float32 rounding alike
    for name, a, b in zip("qkv", g, g_ref):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        close(a, b, atol=torch_ref.ATOL * max(1.0, float(b.abs().max())))
    if grad_mask:
        assert m.grad.shape == mask.shape
        close(m.grad, m_ref.grad, atol=torch_ref.ATOL * max(1.0, float(m_ref.grad.abs().max())))
    return g


@pytest.mark.parametrize("B,H,L,S,E,Ev", SHAPES)
def test_grad_plain_and_causal(torch, T, gen, B, H, L, S, E, Ev):
    q, k, v = qkv(torch, gen, B, H, L, S, E, Ev)
    check_grads(torch, T, gen, q, k, v)
    check_grads(torch, T, gen, q, k, v, is_causal=True)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("B,H,L,S,E,Ev", [(2, 3, 7, 7, 8, 8), (1, 2, 5, 13, 16, 4)])
def test_grad_masks(torch, T, gen, kind, B, H, L, S, E, Ev):
    q, k, v = qkv(torch, gen, B, H, L, S, E, Ev)
    m = masks(torch, gen, B, H, L, S)[kind]
    g = check_grads(torch, T, gen, q, k, v, mask=m)
    check_grads(torch, T, gen, q, k, v, mask=m, is_causal=True)
    if m.dtype != torch.bool and kind not in ("float_causal", "float_all_inf"):
        # the gradient of a float mask, summed over its broadcast dimensions
        check_grads(torch, T, gen, q, k, v, mask=m, grad_mask=True)
    if kind == "float_all_inf":
        for t in g:
            assert torch.equal(t, torch.zeros_like(t))


@pytest.mark.parametrize("H,Hkv", [(4, 2), (6, 1), (6, 3)])
def test_grad_gqa(torch, T, gen, H, Hkv):
    q, k, v = qkv(torch, gen, 2, H, 9, 11, 8, 8, Hkv=Hkv)
    check_grads(torch, T, gen, q, k, v, enable_gqa=True)
    check_grads(torch, T, gen, q, k, v, enable_gqa=True, is_causal=True, scale=0.2)


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_grad_scale(torch, T, gen, scale):
    q, k, v = qkv(torch, gen, 2, 2, 8, 10, 16, 12)
    check_grads(torch, T, gen, q, k, v, scale=scale)


@pytest.mark.parametrize("shape_q,shape_kv", [((7, 8), (5, 8)), ((3, 7, 8), (3, 5, 8)),
                                              ((2, 3, 4, 7, 8), (2, 3, 4, 5, 8))])
def test_grad_ranks(torch, T, gen, shape_q, shape_kv):
    q = rand(torch, gen, *shape_q)
    k, v = rand(torch, gen, *shape_kv), rand(torch, gen, *shape_kv)
    fm = torch.randn(shape_q[-2], shape_kv[-2], generator=gen, dtype=torch.float64)
    check_grads(torch, T, gen, q, k, v, mask=fm, grad_mask=True, is_causal=True)


def test_grad_sum_stride0(torch, T, gen):
    """out.sum().backward() hands the backward a stride-0 gradient."""
    q, k, v = (t.float() for t in qkv(torch, gen, 2, 2, 7, 9, 8, 8))
    q.requires_grad_(True)
    k.requires_grad_(True)
    v.requires_grad_(True)
    T.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    ours = [t.grad for t in (q, k, v)]
    _, ref = torch_ref.grads(lambda a, b, c: torch_ref.sdpa(a, b, c, is_causal=True),
                             [t.detach().double() for t in (q, k, v)],
                             torch.ones(2, 2, 7, 8, dtype=torch.float64))
    for a, b in zip(ours, ref):
        assert a.dtype == torch.float32
        close(a, b)


def test_grad_strided(torch, T, gen):
    """Non-contiguous leaves (transposed, sliced, expanded) and a
    non-contiguous incoming gradient."""
    base = torch.randn(2, 9, 3, 16, generator=gen, dtype=torch.float64)
    kb = torch.randn(2, 3, 11, 40, generator=gen, dtype=torch.float64)
    v1 = torch.randn(2, 1, 11, 8, generator=gen, dtype=torch.float64)
    leaves = [base.clone().requires_grad_(True), kb.clone().requires_grad_(True),
              v1.clone().requires_grad_(True)]
    leaves_ref = [t.detach().clone().requires_grad_(True) for t in leaves]
    dbig = torch.randn(2, 9, 3, 8, generator=gen, dtype=torch.float64)
    dout = dbig.transpose(1, 2)  # (2, 3, 9, 8), not contiguous

    def views(a, b, c):
        return a.transpose(1, 2), b[..., 4:20], c.expand(2, 3, 11, 8)

    T.scaled_dot_product_attention(*views(*leaves)).backward(dout)
    torch_ref.sdpa(*views(*leaves_ref)).backward(dout)
    for a, b in zip(leaves, leaves_ref):
        close(a.grad, b.grad)


def test_grad_partial(torch, T, gen):
    """Only some inputs need grad; the others get none."""
    q, k, v = qkv(torch, gen, 1, 2, 6, 6, 4, 4)
    q.requires_grad_(True)
    T.scaled_dot_product_attention(q, k, v).sum().backward()
    assert q.grad is not None and k.grad is None and v.grad is None
    with pytest.raises(RuntimeError):  # no double backward: a clear error, not a wrong one
        q2 = q.detach().clone().requires_grad_(True)
        out = T.scaled_dot_product_attention(q2, k, v)
        (g,) = torch.autograd.grad(out.sum(), q2, create_graph=True)
        g.sum().backward()


def test_grad_dtypes(torch, T, gen):
    q, k, v = qkv(torch, gen, 2, 2, 9, 9, 8, 8)
    dout = torch.randn(2, 2, 9, 8, generator=gen, dtype=torch.float64)
    f = T.scaled_dot_product_attention
    _, g64 = torch_ref.grads(f, [q, k, v], dout)
    _, g32 = torch_ref.grads(f, [q.float(), k.float(), v.float()], dout.float())
    for a, b in zip(g64, g32):
        assert a.dtype == torch.float64 and b.dtype == torch.float32
        assert torch.equal(a, b.double())  # float64 is computed in float32
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    _, gb = torch_ref.grads(f, [qb, kb, vb], dout.bfloat16())
    _, gw = torch_ref.grads(f, [qb.float(), kb.float(), vb.float()], dout.bfloat16().float())
    for a, b in zip(gb, gw):
        assert a.dtype == torch.bfloat16
        assert torch.equal(a, b.bfloat16())  # rounded once, at the end


def test_grad_dropout(torch, T, gen):
    """The backward regenerates the forward's keep pattern from its seed."""
    q, k, v = qkv(torch, gen, 2, 3, 8, 12, 8, 8)
    dout = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    p = 0.25
    torch.manual_seed(77)
    _, g = torch_ref.grads(lambda a, b, c: T.scaled_dot_product_attention(a, b, c, dropout_p=p,
                                                                           is_causal=True),
                           [q, k, v], dout)
    torch.manual_seed(77)
    seed = int(torch.empty((), dtype=torch.int64).random_())
    keep = torch.from_numpy(T.dropout_keep_grid(seed, 2, 3, 8, 12, p))
    _, g_ref = torch_ref.grads(lambda a, b, c: torch_ref.sdpa(a, b, c, is_causal=True, keep=keep,
                                                              dropout_p=p), [q, k, v], dout)
    for a, b in zip(g, g_ref):
        close(a, b)


def test_gradcheck(torch, T, gen):
    """torch.autograd.gradcheck of the whole function. attn computes in
    float32, so the inputs are float64 leaves that attn rounds to float32 and
    the finite differences use eps = 1e-3: their float32 noise is about
    1e-7 / eps = 1e-4 and their truncation error eps^2 = 1e-6, so atol =
    rtol = 1e-3 passes a correct gradient and fails a wrong one (a wrong
    term changes the Jacobian by O(1e-1) here)."""
    q, k, v = (t.requires_grad_(True) for t in qkv(torch, gen, 1, 2, 5, 6, 4, 3))
    fm = torch.randn(5, 6, generator=gen, dtype=torch.float64).requires_grad_(True)
    keep = torch.rand(2, 5, 6, generator=gen) > 0.3
    kw = dict(eps=1e-3, atol=1e-3, rtol=1e-3)
    f = T.scaled_dot_product_attention
    assert torch.autograd.gradcheck(lambda a, b, c: f(a, b, c), (q, k, v), **kw)
    assert torch.autograd.gradcheck(lambda a, b, c: f(a, b, c, is_causal=True, scale=0.7),
                                    (q, k, v), **kw)
    assert torch.autograd.gradcheck(lambda a, b, c, m: f(a, b, c, attn_mask=m), (q, k, v, fm),
                                    **kw)
    assert torch.autograd.gradcheck(lambda a, b, c: f(a, b, c, attn_mask=keep), (q, k, v), **kw)
    qg = torch.randn(1, 4, 5, 4, generator=gen, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: f(a, b, c, enable_gqa=True), (qg, k, v),
                                    **kw)
    # and the check has teeth: a gradient off by 1% fails it
    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * 1.01

    assert not torch.autograd.gradcheck(lambda a, b, c: f(Off.apply(a), b, c), (q, k, v),
                                        raise_exception=False, **kw)


def test_dataloader_workers():
    """In DataLoader worker processes (forked after the parent ran attn on 2
    threads) attn follows torch's thread count there (1) and computes the
    parent's result. A subprocess with a timeout: a hang fails the test."""
    code = r"""
import torch, attn.torch as T
g = torch.Generator().manual_seed(0)
q = torch.randn(2, 4, 128, 32, generator=g)
ref = T.scaled_dot_product_attention(q, q, q, is_causal=True, num_threads=2)
class D(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return T.get_num_threads(), T.scaled_dot_product_attention(q, q, q, is_causal=True)
dl = torch.utils.data.DataLoader(D(), batch_size=None, num_workers=2)
res = [(n, bool(torch.equal(o, ref))) for n, o in dl]
assert res == [(1, True)] * 4, res
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
