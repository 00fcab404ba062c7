"""The score modifiers written from design.md's contract alone, in float64
NumPy (no attn import): shared by python/tests/test_modifiers.py and the
CLI's tools/attn/tests/test_modifiers_cli.py."""
import numpy as np


def ref(q, k, v, scale=None, causal="none", mask=None, key_lengths=None, window=None,
        softcap=None, alibi_slopes=None, sinks=None, q_offset=None, k_offset=None):
    """out (B, H, Nq, dv) and lse (B, H, Nq) in float64, written from the
    contract alone (design.md "Score modifiers")."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, H, Nq, d = q.shape
    Hkv, Nkv = k.shape[1], k.shape[2]
    k, v = np.repeat(k, H // Hkv, axis=1), np.repeat(v, H // Hkv, axis=1)
    L = np.full(B, Nkv) if key_lengths is None else np.asarray(key_lengths)
    if q_offset is None:
        q0 = np.zeros(B) if causal == "top_left" else L - Nq
    else:
        q0 = np.broadcast_to(np.asarray(q_offset), (B,))
    k0 = 0 if k_offset is None else k_offset
    i, j = np.arange(Nq)[None, :, None], np.arange(Nkv)[None, None, :]
    dist = (q0[:, None, None] + i) - (k0 + j)                     # (B, Nq, Nkv)
    vis = j < L[:, None, None]
    if causal != "none":
        vis = vis & (dist >= 0)
    left, right = (-1, -1) if window is None else [-1 if w is None else w for w in window]
    if left >= 0:
        vis = vis & (dist <= left)
    if right >= 0:
        vis = vis & (-dist <= right)
    vis = np.broadcast_to(vis[:, None], (B, H, Nq, Nkv))
    s = np.einsum("bhie,bhje->bhij", q, k) * (1 / np.sqrt(d) if scale is None else scale)
    if softcap:
        s = softcap * np.tanh(s / softcap)
    if alibi_slopes is not None:
        s = s - np.asarray(alibi_slopes, np.float64)[None, :, None, None] * np.abs(dist)[:, None]
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, np.float64), s.shape)
        vis = vis & ~np.isneginf(m)
        s = s + np.where(np.isneginf(m), 0.0, m)
    s = np.where(vis, s, -np.inf)
    sink = (np.full(H, -np.inf) if sinks is None else np.asarray(sinks, np.float64))
    sink = np.broadcast_to(sink[None, :, None], (B, H, Nq))
    mx = np.maximum(np.max(s, axis=-1), sink)
    mx0 = np.where(np.isfinite(mx), mx, 0.0)
    e = np.exp(s - mx0[..., None])
    den = e.sum(-1) + np.exp(sink - mx0)
    w = np.divide(e, den[..., None], out=np.zeros_like(e), where=den[..., None] > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(den > 0, mx0 + np.log(den), -np.inf)
    return np.einsum("bhij,bhjf->bhif", w, v), lse


def alibi_slopes_ref(H):
    """The ALiBi paper's slopes: 2^(-8h/n) for h = 1..n, n the largest power
    of two <= H, then 2^(-8h/(2n)) at odd h for the H - n heads left."""
    n = 1 << (H.bit_length() - 1)
    first = [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]
    extra = [2.0 ** (-8.0 * h / (2 * n)) for h in range(1, 2 * (H - n), 2)]
    return np.array(first + extra, np.float32)
