"""attn.torch.MultiheadAttention against torch.nn.MultiheadAttention itself:
state dicts loaded both ways, equal outputs, weights and gradients, masks in
MHA's convention (bool True = masked), dropout in train mode only, errors.
Float64 modules; tolerances of torch_ref (attn computes in float32)."""

import numpy as np
import pytest

import attn
from torch_ref import close


@pytest.fixture(scope="module")
def T(torch):
    import attn.torch as T

    return T


def pair(torch, T, seed, E, H, **kw):
    """An nn.MultiheadAttention with random (not default) parameters and an
    attn.torch one loaded from its state dict; float64."""
    torch.manual_seed(seed)
    m = torch.nn.MultiheadAttention(E, H, **kw).double()
    with torch.no_grad():
        for prm in m.parameters():
            prm.copy_(torch.randn(prm.shape, dtype=torch.float64) * prm.shape[-1] ** -0.5)
    a = T.MultiheadAttention(E, H, **kw).double()
    a.load_state_dict(m.state_dict())
    return m, a


def inputs(torch, gen, B, L, S, E, kdim, vdim, batch_first, self_attn=False):
    def t(n, d):
        x = torch.randn(B, n, d, generator=gen, dtype=torch.float64)
        return x if batch_first else x.transpose(0, 1)  # (N, B, d) views

    q = t(L, E)
    if self_attn:
        return q, q, q
    return q, t(S, kdim), t(S, vdim)


@pytest.fixture
def gen(torch, rng):
    g = torch.Generator()
    g.manual_seed(int(rng.integers(1 << 62)))
    return g


KINDS = [dict(), dict(bias=False), dict(add_bias_kv=True), dict(add_zero_attn=True),
         dict(kdim=5, vdim=7), dict(add_bias_kv=True, add_zero_attn=True)]


def mask_sets(torch, gen, B, H, L, S):
    am_b = torch.rand(L, S, generator=gen) > 0.7  # True = masked
    am_b[:, 0] = False
    kpm_b = torch.rand(B, S, generator=gen) > 0.7
    kpm_b[:, 0] = False
    right = torch.arange(S)[None, :] >= torch.tensor([S, max(1, S // 2)] * B)[:B, None]
    return {
        "none": {},
        "attn_bool": dict(attn_mask=am_b),
        "attn_float": dict(attn_mask=torch.randn(L, S, generator=gen, dtype=torch.float64)),
        "attn_3d": dict(attn_mask=torch.rand(B * H, L, S, generator=gen) > 0.8),
        "causal_bool": dict(attn_mask=torch.ones(L, S, dtype=torch.bool).triu(1)),
        "causal_float": dict(attn_mask=torch.zeros(L, S, dtype=torch.float64).masked_fill(
            torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))),
        "kpm_bool": dict(key_padding_mask=kpm_b),
        "kpm_right": dict(key_padding_mask=right),
        "kpm_float": dict(key_padding_mask=torch.randn(B, S, generator=gen,
                                                       dtype=torch.float64)),
        "both": dict(attn_mask=am_b, key_padding_mask=kpm_b),
        "causal_and_right": dict(attn_mask=torch.ones(L, S, dtype=torch.bool).triu(1),
                                 key_padding_mask=right),
    }


@pytest.mark.parametrize("kind", range(len(KINDS)))
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "attn_bool", "attn_float", "attn_3d", "causal_bool",
                                   "causal_float", "kpm_bool", "kpm_right", "kpm_float", "both",
                                   "causal_and_right"])
def test_forward_matches_torch(torch, T, gen, kind, batch_first, masks):
    kw = KINDS[kind]
    E, H, B, L, S = 16, 4, 2, 6, 6
    m, a = pair(torch, T, kind, E, H, batch_first=batch_first, **kw)
    q, k, v = inputs(torch, gen, B, L, S, E, kw.get("kdim", E), kw.get("vdim", E), batch_first)
    mk = mask_sets(torch, gen, B, H, L, S)[masks]
    o_ref, w_ref = m(q, k, v, **mk)
    o, w = a(q, k, v, **mk)
    close(o, o_ref)
    close(w, w_ref)
    o_ref, w_ref = m(q, k, v, average_attn_weights=False, **mk)
    o, w = a(q, k, v, average_attn_weights=False, **mk)
    assert w.shape == (B, H, L, S + kw.get("add_bias_kv", 0) + kw.get("add_zero_attn", 0))
    close(o, o_ref)
    close(w, w_ref)
    o, w = a(q, k, v, need_weights=False, **mk)
    assert w is None
    close(o, o_ref)


@pytest.mark.parametrize("batch_first", [False, True])
def test_self_attention_packed(torch, T, gen, batch_first):
    m, a = pair(torch, T, 7, 24, 3, batch_first=batch_first)
    x, _, _ = inputs(torch, gen, 3, 9, 9, 24, 24, 24, batch_first, self_attn=True)
    for mk in ({}, dict(attn_mask=torch.ones(9, 9, dtype=torch.bool).triu(1))):
        o_ref, w_ref = m(x, x, x, **mk)
        o, w = a(x, x, x, **mk)
        close(o, o_ref)
        close(w, w_ref)


def test_cross_lengths(torch, T, gen):
    m, a = pair(torch, T, 3, 16, 2, batch_first=True)
    q, k, v = inputs(torch, gen, 2, 5, 11, 16, 16, 16, True)
    for mk in ({}, dict(attn_mask=torch.ones(5, 11, dtype=torch.bool).triu(1))):
        o_ref, w_ref = m(q, k, v, **mk)
        o, w = a(q, k, v, **mk)
        close(o, o_ref)
        close(w, w_ref)


def test_unbatched(torch, T, gen):
    m, a = pair(torch, T, 4, 16, 4)
    q = torch.randn(5, 16, generator=gen, dtype=torch.float64)
    kv = torch.randn(7, 16, generator=gen, dtype=torch.float64)
    kpm = torch.tensor([False, False, True, False, False, True, False])
    am = torch.rand(4, 5, 7, generator=gen) > 0.8  # (num_heads, L, S) when unbatched
    for mk in ({}, dict(key_padding_mask=kpm), dict(attn_mask=am, key_padding_mask=kpm)):
        o_ref, w_ref = m(q, kv, kv, **mk)
        o, w = a(q, kv, kv, **mk)
        assert o.shape == (5, 16) and w.shape == (5, 7)
        close(o, o_ref)
        close(w, w_ref)


def test_is_causal_hint(torch, T, gen):
    _, a = pair(torch, T, 5, 16, 4, batch_first=True)
    x, _, _ = inputs(torch, gen, 2, 8, 8, 16, 16, 16, True, self_attn=True)
    causal = torch.ones(8, 8, dtype=torch.bool).triu(1)
    o, w = a(x, x, x, attn_mask=causal)
    o2, w2 = a(x, x, x, attn_mask=causal, is_causal=True)
    close(o2, o, rtol=1e-6, atol=1e-7)
    close(w2, w, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="is_causal=True is a hint that needs attn_mask"):
        a(x, x, x, is_causal=True)


def test_fully_masked_rows_give_zeros(torch, T, gen):
    _, a = pair(torch, T, 6, 8, 2, batch_first=True, bias=False)
    x, _, _ = inputs(torch, gen, 2, 4, 4, 8, 8, 8, True, self_attn=True)
    kpm = torch.tensor([[True] * 4, [False, False, True, True]])
    o, w = a(x, x, x, key_padding_mask=kpm)
    assert torch.equal(o[0], torch.zeros_like(o[0]))  # bias=False: the projection of 0 is 0
    assert torch.equal(w[0], torch.zeros_like(w[0]))
    assert torch.isfinite(o).all()
    assert torch.allclose(w[1].sum(-1), torch.ones(4, dtype=torch.float64))


def test_state_dict_both_ways(torch, T):
    for kw in KINDS:
        torch.manual_seed(11)
        ours = T.MultiheadAttention(12, 3, **kw)
        torch.manual_seed(11)
        theirs = torch.nn.MultiheadAttention(12, 3, **kw)
        # the same constructor draws the same initial weights
        sa, sb = ours.state_dict(), theirs.state_dict()
        assert list(sa) == list(sb)
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
        assert [n for n, _ in ours.named_parameters()] == \
            [n for n, _ in theirs.named_parameters()]
        # and load across, strictly
        other = torch.nn.MultiheadAttention(12, 3, **kw)
        other.load_state_dict(ours.state_dict(), strict=True)
        back = T.MultiheadAttention(12, 3, **kw)
        back.load_state_dict(other.state_dict(), strict=True)
        assert isinstance(back, torch.nn.MultiheadAttention)


def test_same_as_numpy_class(torch, T, gen):
    """The NumPy attn.MultiHeadAttention built from the same state dict
    computes the same function (float32 both)."""
    torch.manual_seed(2)
    a = T.MultiheadAttention(16, 4, batch_first=True)
    a.eval()
    x = torch.randn(2, 7, 16, generator=gen)
    o, _ = a(x, x, x, need_weights=False)
    st = {key: val.numpy() for key, val in a.state_dict().items()}
    n = attn.MultiHeadAttention.from_torch_state(st, 4)
    np.testing.assert_allclose(n(x.numpy()), o.detach().numpy(), rtol=1e-4, atol=5e-5)


def test_dropout_train_only(torch, T, gen):
    torch.manual_seed(9)
    a = T.MultiheadAttention(16, 4, dropout=0.4, batch_first=True).double()
    ref = T.MultiheadAttention(16, 4, dropout=0.0, batch_first=True).double()
    ref.load_state_dict(a.state_dict())
    x = torch.randn(2, 10, 16, generator=gen, dtype=torch.float64)
    a.eval()
    o_eval, w_eval = a(x, x, x)
    o0, w0 = ref(x, x, x)
    assert torch.equal(o_eval, o0) and torch.equal(w_eval, w0)
    a.train()
    torch.manual_seed(5)
    o1, w1 = a(x, x, x, average_attn_weights=False)
    torch.manual_seed(5)
    o2, w2 = a(x, x, x, average_attn_weights=False)
    o3, _ = a(x, x, x)
    assert torch.equal(o1, o2) and torch.equal(w1, w2)
    assert not torch.equal(o1, o3)
    assert (o1 - o0).abs().max() > 1e-3
    # the returned weights are the ones used (after dropout, as PyTorch's):
    # the output equals the weights applied to the projected values
    E, H, hd = 16, 4, 4
    v = torch.nn.functional.linear(x, a.in_proj_weight[2 * E:], a.in_proj_bias[2 * E:])
    v = v.reshape(2, 10, H, hd).transpose(1, 2)
    heads = (w1 @ v).transpose(1, 2).reshape(2, 10, E)
    close(o1, torch.nn.functional.linear(heads, a.out_proj.weight, a.out_proj.bias))
    zeros = (w1 == 0).double().mean()
    assert 0.25 < zeros < 0.55


def test_float32_and_bfloat16(torch, T, gen):
    torch.manual_seed(1)
    a = T.MultiheadAttention(16, 2, batch_first=True)
    m = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    m.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 16, generator=gen)
    o, w = a(x, x, x)
    o_ref, w_ref = m(x, x, x)
    assert o.dtype == torch.float32 and w.dtype == torch.float32
    close(o, o_ref)
    close(w, w_ref)
    ab = T.MultiheadAttention(16, 2, batch_first=True).bfloat16()
    ab.load_state_dict({key: val.bfloat16() for key, val in a.state_dict().items()})
    ob, wb = ab(x.bfloat16(), x.bfloat16(), x.bfloat16())
    assert ob.dtype == torch.bfloat16 and wb.dtype == torch.bfloat16
    close(ob, o_ref, rtol=5e-2, atol=5e-2)


def test_errors(torch, T, gen):
    a = T.MultiheadAttention(8, 2)
    x = torch.randn(3, 2, 8)
    with pytest.raises(TypeError, match="query has dtype torch.float16"):
        a(x.half(), x, x)
    with pytest.raises(ValueError, match="key is on device meta"):
        a(x, torch.empty(3, 2, 8, device="meta"), x)
    with pytest.raises(ValueError, match="embed_dim=8"):
        a(torch.randn(3, 2, 6), x, x)
    with pytest.raises(ValueError, match="attn_mask has shape"):
        a(x, x, x, attn_mask=torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        a(x, x, x, key_padding_mask=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask has dtype torch.int64"):
        a(x, x, x, key_padding_mask=torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="3-d"):
        a(x[None], x[None], x[None])


def grads_of(mod, q, k, v, dout, dw, **kw):
    """Parameter and input gradients of (out * dout).sum() (+ (w * dw).sum())."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    mod.zero_grad(set_to_none=True)
    out, w = mod(*leaves, need_weights=dw is not None, **kw)
    loss = (out * dout).sum()
    if dw is not None:
        loss = loss + (w * dw).sum()
    loss.backward()
    return out, {n: p.grad for n, p in mod.named_parameters()}, [t.grad for t in leaves]


@pytest.mark.parametrize("kind", range(len(KINDS)))
@pytest.mark.parametrize("masks", ["none", "attn_float", "causal_bool", "kpm_bool", "kpm_right",
                                   "both", "causal_and_right"])
@pytest.mark.parametrize("with_weights", [False, True])
def test_gradients_match_torch(torch, T, gen, kind, masks, with_weights):
    kw = KINDS[kind]
    E, H, B, L, S = 16, 4, 2, 6, 6
    m, a = pair(torch, T, 20 + kind, E, H, batch_first=True, **kw)
    q, k, v = inputs(torch, gen, B, L, S, E, kw.get("kdim", E), kw.get("vdim", E), True)
    mk = mask_sets(torch, gen, B, H, L, S)[masks]
    dout = torch.randn(B, L, E, generator=gen, dtype=torch.float64)
    extra = kw.get("add_bias_kv", 0) + kw.get("add_zero_attn", 0)
    dw = torch.randn(B, L, S + extra, generator=gen, dtype=torch.float64) if with_weights else None
    o_ref, gp_ref, gx_ref = grads_of(m, q, k, v, dout, dw, **mk)
    o, gp, gx = grads_of(a, q, k, v, dout, dw, **mk)
    close(o, o_ref)
    assert set(gp) == set(gp_ref)
    for n in gp:
        close(gp[n], gp_ref[n])
    for g, g_ref in zip(gx, gx_ref):
        close(g, g_ref)


def test_self_attention_gradients_train_loop(torch, T, gen):
    """A few optimiser steps with each module from the same start stay
    together (float64, dropout 0)."""
    m, a = pair(torch, T, 31, 16, 2, batch_first=True)
    x = torch.randn(3, 8, 16, generator=gen, dtype=torch.float64)
    causal = torch.ones(8, 8, dtype=torch.bool).triu(1)
    opts = [torch.optim.SGD(mod.parameters(), lr=0.1) for mod in (m, a)]
    for _ in range(5):
        for mod, opt in zip((m, a), opts):
            opt.zero_grad()
            out, _ = mod(x, x, x, attn_mask=causal, need_weights=False)
            (out ** 2).mean().backward()
            opt.step()
    for (n, p1), (_, p2) in zip(m.named_parameters(), a.named_parameters()):
        close(p2, p1)


def test_learned_float_mask_gradient(torch, T, gen):
    """A float attn_mask that requires grad (a learned bias) gets PyTorch's
    gradient, through attn's dmask."""
    E, H, B, L, S = 16, 4, 2, 5, 7
    m, a = pair(torch, T, 41, E, H, batch_first=True)
    q, k, v = inputs(torch, gen, B, L, S, E, E, E, True)
    bias = torch.randn(B * H, L, S, generator=gen, dtype=torch.float64)
    dout = torch.randn(B, L, E, generator=gen, dtype=torch.float64)
    grads = []
    for mod in (m, a):
        b = bias.clone().requires_grad_(True)
        out, _ = mod(q, k, v, attn_mask=b, need_weights=False)
        (out * dout).sum().backward()
        grads.append(b.grad)
    close(grads[1], grads[0])
    assert grads[0].abs().max() > 1e-3
