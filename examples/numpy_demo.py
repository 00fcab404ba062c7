#!/usr/bin/python3
"""The article's walkthrough, computed by attn, checked against NumPy.

Each step prints the shapes as they change and the largest difference
between attn (float32 inside, float64 returned for float64 inputs) and the
same formula written in NumPy (float64).

Run from a build tree:   PYTHONPATH=build/python /usr/bin/python3 examples/numpy_demo.py
or after installing:     /usr/bin/python3 examples/numpy_demo.py
"""

import os
import sys

import numpy as np

try:
    import attn
except ImportError:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "build", "python"))
    try:
        import attn
    except ImportError:
        sys.exit("numpy_demo: cannot import attn; build it (make) and run with "
                 "PYTHONPATH=build/python, or install it (see README)")

TOL = 1e-4  # float32 arithmetic on O(1) values
worst = 0.0


def softmax(x, axis=-1):
    ex = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return ex / np.sum(ex, axis=axis, keepdims=True)


def report(name, got, ref):
    global worst
    diff = float(np.max(np.abs(got - ref)))
    worst = max(worst, diff)
    print(f"    {name}: result {got.shape} {got.dtype}, max |attn - numpy| = {diff:.2e}")


rng = np.random.default_rng(0)
B, N, D, NH = 4, 8, 512, 8
HS = D // NH
print(f"attn {attn.__version__}: {attn.build_info()}")
print(f"sizes: B={B} sequences, N={N} tokens, D={D} embedding depth, NH={NH} heads, HS={HS}\n")

print("1. softmax over the last axis (any rank)")
z = rng.standard_normal((B, N, N)) * 3
report("softmax_lastdim(z)  z " + str(z.shape), attn.softmax_lastdim(z), softmax(z))
print(f"    rows sum to 1: max |sum - 1| = {np.abs(attn.softmax_lastdim(z).sum(-1) - 1).max():.1e}")

print("2. self-attention of one sequence")
x = rng.standard_normal((N, D))
Wk, Wq, Wv = (rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(3))
q, k, v = x @ Wq, x @ Wk, x @ Wv
print(f"    x {x.shape} @ W {Wq.shape} -> q, k, v {q.shape}")
print(f"    q @ k.T / sqrt({HS}) -> scores {(q @ k.T).shape}; softmax rows;"
      f" @ v -> {(q @ k.T @ v).shape}")
ref = softmax(q @ k.T / np.sqrt(HS)) @ v
report("self_attention(x, Wk, Wq, Wv)", attn.self_attention(x, Wk, Wq, Wv), ref)

print("3. batched self-attention")
xb = rng.standard_normal((B, N, D))
q, k, v = xb @ Wq, xb @ Wk, xb @ Wv
print(f"    x {xb.shape} -> q {q.shape}; k.swapaxes(-2, -1) {k.swapaxes(-2, -1).shape};"
      f" scores {(q @ k.swapaxes(-2, -1)).shape}")
ref = softmax(q @ k.swapaxes(-2, -1) / np.sqrt(HS)) @ v
report("self_attention_batched(x, Wk, Wq, Wv)", attn.self_attention_batched(xb, Wk, Wq, Wv), ref)

print("4. multi-head attention, a list of weights per head, then causal")
Wqs = [rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(NH)]
Wks = [rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(NH)]
Wvs = [rng.standard_normal((D, HS)) / np.sqrt(D) for _ in range(NH)]
Wp = rng.standard_normal((NH * HS, D)) / np.sqrt(NH * HS)
print(f"    {NH} heads of (D, HS) = {Wqs[0].shape}; heads concatenated ({B}, {N}, {NH * HS});"
      f" @ Wp {Wp.shape} -> ({B}, {N}, {D})")
tril = np.tril(np.ones((N, N)))
for do_mask in (False, True):
    outs = []
    for Wq_, Wk_, Wv_ in zip(Wqs, Wks, Wvs):
        s = (xb @ Wq_) @ (xb @ Wk_).swapaxes(-2, -1) / np.sqrt(HS)
        if do_mask:
            s = np.where(tril == 0, -np.inf, s)
        outs.append(softmax(s) @ (xb @ Wv_))
    ref = np.concatenate(outs, axis=-1) @ Wp
    got = attn.multihead_attention_list(xb, Wqs, Wks, Wvs, Wp, do_mask=do_mask)
    report(f"multihead_attention_list(..., do_mask={do_mask})", got, ref)

print("5. vectorized multi-head attention with one (D, 3D) matrix")
W = rng.standard_normal((D, 3 * D)) / np.sqrt(D)
Wp = rng.standard_normal((D, D)) / np.sqrt(D)
qkv = xb @ W
qh, kh, vh = (t.reshape(B, N, NH, HS).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, axis=-1))
print(f"    x @ W {W.shape} -> qkv {qkv.shape}; split, reshape, transpose -> q, k, v {qh.shape}")
s = np.einsum("bhie,bhje->bhij", qh, kh) / np.sqrt(HS)
print(f"    einsum 'bhie,bhje->bhij' -> scores {s.shape}; einsum 'bhij,bhjf->bhif' -> {qh.shape}")
for do_mask in (False, True):
    ss = np.where(tril == 0, -np.inf, s) if do_mask else s
    a = np.einsum("bhij,bhjf->bhif", softmax(ss), vh)
    ref = a.transpose(0, 2, 1, 3).reshape(B, N, D) @ Wp
    got = attn.multihead_attention_vec(xb, W, NH, Wp, do_mask=do_mask)
    report(f"multihead_attention_vec(x, W, {NH}, Wp, do_mask={do_mask})", got, ref)

print("6. cross-attention: queries from one sequence, keys and values from another")
Nv = 13
xv = rng.standard_normal((B, Nv, D))
Wp = rng.standard_normal((NH * HS, D)) / np.sqrt(NH * HS)
outs = [softmax((xb @ Wq_) @ (xv @ Wk_).swapaxes(-2, -1) / np.sqrt(HS)) @ (xv @ Wv_)
        for Wq_, Wk_, Wv_ in zip(Wqs, Wks, Wvs)]
print(f"    xq {xb.shape}, xv {xv.shape} -> scores ({B}, {N}, {Nv}) per head")
report("multihead_cross_attention_list(xq, xv, ...)",
       attn.multihead_cross_attention_list(xb, xv, Wqs, Wks, Wvs, Wp),
       np.concatenate(outs, axis=-1) @ Wp)

print("7. the column layout: tokens are columns, weights (HS, D), biases (HS, 1)")
xc = rng.standard_normal((D, N))
Wkc, Wqc, Wvc = (rng.standard_normal((HS, D)) / np.sqrt(D) for _ in range(3))
Bk, Bq, Bv = (rng.standard_normal((HS, 1)) for _ in range(3))
qc, kc, vc = Wqc @ xc + Bq, Wkc @ xc + Bk, Wvc @ xc + Bv
print(f"    x {xc.shape}; q = Wq @ x + Bq {qc.shape}; k.T @ q {(kc.T @ qc).shape}, "
      f"softmax down columns; v @ att -> {vc.shape}")
report("self_attention_cols(x, Wk, Wq, Wv, Bk, Bq, Bv)",
       attn.self_attention_cols(xc, Wkc, Wqc, Wvc, Bk, Bq, Bv),
       vc @ softmax(kc.T @ qc / np.sqrt(HS), axis=0))

print("8. extensions: biases, layer norm, grouped-query sdpa")
gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
mu = xb.mean(-1, keepdims=True)
ln = (xb - mu) / np.sqrt(((xb - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * gamma + beta
report("layer_norm(x, gamma, beta)", attn.layer_norm(xb, gamma, beta), ln)
bqkv, bo = rng.standard_normal(3 * D), rng.standard_normal(D)
mha = attn.MultiHeadAttention(NH, Wqkv=W, bqkv=bqkv, Wo=Wp[:D], bo=bo, causal="top_left")
qh, kh, vh = ((xb @ W + bqkv)[..., i * D:(i + 1) * D].reshape(B, N, NH, HS).transpose(0, 2, 1, 3)
              for i in range(3))
s = np.where(tril == 0, -np.inf, qh @ kh.swapaxes(-1, -2) / np.sqrt(HS))
ref = (softmax(s) @ vh).transpose(0, 2, 1, 3).reshape(B, N, D) @ Wp[:D] + bo
report("MultiHeadAttention(NH, Wqkv, bqkv, Wo, bo, causal)(x)", mha(xb), ref)
kv_heads = 2
qg = rng.standard_normal((B, NH, N, HS))
kg, vg = (rng.standard_normal((B, kv_heads, N, HS)) for _ in range(2))
print(f"    sdpa: q {qg.shape}, k and v {kg.shape}"
      f" (each kv head serves {NH // kv_heads} query heads)")
kr, vr = np.repeat(kg, NH // kv_heads, axis=1), np.repeat(vg, NH // kv_heads, axis=1)
ref = softmax(qg @ kr.swapaxes(-1, -2) / np.sqrt(HS)) @ vr
report("sdpa(q, k, v)", attn.sdpa(qg, kg, vg), ref)

print(f"\nlargest difference overall: {worst:.2e} (tolerance {TOL:.0e})")
if not worst < TOL:
    sys.exit("numpy_demo: attn and NumPy disagree")
print("OK")
