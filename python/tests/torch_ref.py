"""PyTorch's own composition of attention, float64, as the independent
reference for attn.torch (written from PyTorch 2.x's documented semantics,
not from attn's code), with PyTorch's autograd giving the reference
gradients.

Tolerances: attn computes in float32 whatever the input dtype. On
well-scaled data (N(0, 1) inputs, O(1) scores) float32 rounding gives about
1e-6 in the outputs and a few 1e-6 in the gradients; the tests allow
RTOL = 1e-4 and ATOL = 2e-5 (as numpy_ref), so a wrong scale, head, mask or
gradient term (changes of 1e-2 or more) cannot pass."""

import torch

RTOL = 1e-4
ATOL = 2e-5


def close(got, ref, rtol=RTOL, atol=ATOL):
    assert tuple(got.shape) == tuple(ref.shape), (tuple(got.shape), tuple(ref.shape))
    torch.testing.assert_close(got.to(torch.float64), ref.to(torch.float64), rtol=rtol, atol=atol)


def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, enable_gqa=False, keep=None,
         dropout_p=0.0):
    """softmax(q k^T * scale + mask) @ v with PyTorch 2.x's rules: a bool mask
    True = takes part, a float mask is added, is_causal top-left (j <= i),
    GQA by repeat_interleave over dim -3, a row with no visible key gives 0.
    keep (bool, broadcasting to the weights) applies dropout as keep/(1-p)."""
    if enable_gqa and q.dim() >= 3 and q.shape[-3] != k.shape[-3]:
        r = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(r, dim=-3)
        v = v.repeat_interleave(r, dim=-3)
    sc = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.matmul(q, k.transpose(-2, -1)) * sc
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            s = s.masked_fill(~attn_mask, float("-inf"))
        else:
            s = s + attn_mask
    empty = torch.isneginf(s).all(-1, keepdim=True)
    w = torch.softmax(s.masked_fill(empty, 0.0), -1).masked_fill(empty, 0.0)
    if keep is not None:
        w = w * keep.to(w.dtype) / (1.0 - dropout_p)
    return torch.matmul(w, v)


def grads(fn, inputs, dout):
    """Gradients of (fn(*inputs) * dout).sum() with respect to inputs (fresh
    leaves), as a list (None where an input is not a tensor needing grad)."""
    leaves = [x.detach().clone().requires_grad_(True)
              if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs]
    out = fn(*leaves)
    out.backward(dout)
    return out.detach(), [x.grad if isinstance(x, torch.Tensor) and x.is_floating_point()
                          else None for x in leaves]
