"""`attn run` with the score modifiers (issue 13, point 3): --window L,R,
--softcap, --alibi, --sinks FILE, --q-offset, --k-offset, checked against
the float64 NumPy formulation of python/tests/modifiers_ref.py."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "python", "tests"))
from modifiers_ref import alibi_slopes_ref, ref  # noqa: E402
from test_run import F32, rand, run  # noqa: E402


def qkv(B=2, H=4, Hkv=2, Nq=3, Nkv=8, d=8):
    return rand(B, H, Nq, d), rand(B, Hkv, Nkv, d), rand(B, Hkv, Nkv, d)


@pytest.mark.parametrize("window", [(0, 0), (2, -1), (-1, 1), (5, 5)])
@pytest.mark.parametrize("causal", ["none", "bottom_right"])
def test_window(attn, tmp_path, window, causal):
    q, k, v = qkv()
    got, _ = run(attn, tmp_path, "sdpa", "--window", "%d,%d" % window, "--causal", causal,
                 q=q, k=k, v=v)
    np.testing.assert_allclose(got, ref(q, k, v, causal=causal, window=window)[0], **F32)


def test_every_modifier_with_lse(attn, tmp_path):
    q, k, v = qkv(Nq=5, Nkv=9)
    sinks = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    np.save(tmp_path / "sinks.npy", sinks)
    got, _ = run(attn, tmp_path, "sdpa", "--window", "3,1", "--softcap", "4", "--alibi",
                 "--sinks", tmp_path / "sinks.npy", "--q-offset", "2", "--k-offset", "-1",
                 "--causal", "bottom_right", "--lse-out", tmp_path / "lse.npy", q=q, k=k, v=v)
    want, lse = ref(q, k, v, causal="bottom_right", window=(3, 1), softcap=4.0,
                    alibi_slopes=alibi_slopes_ref(4), sinks=sinks, q_offset=2, k_offset=-1)
    np.testing.assert_allclose(got, want, **F32)
    np.testing.assert_allclose(np.load(tmp_path / "lse.npy"), lse, rtol=1e-5, atol=1e-5)


def test_mha_takes_the_modifiers(attn, tmp_path):
    NH, D, N = 2, 8, 6
    x = rand(N, D)
    Wqkv = rand(D, 3 * D) / np.sqrt(D)
    got, _ = run(attn, tmp_path, "mha", "--heads", NH, "--window", "1,-1", "--alibi",
                 "--softcap", "3", "--causal", "top_left", x=x, Wqkv=Wqkv)
    HS = D // NH
    q, k, v = (np.einsum("nd,de->ne", x.astype(np.float64), Wqkv[:, t * D:(t + 1) * D])
               .reshape(N, NH, HS).transpose(1, 0, 2)[None] for t in range(3))
    want = ref(q, k, v, causal="top_left", window=(1, -1), softcap=3.0,
               alibi_slopes=alibi_slopes_ref(NH))[0]
    np.testing.assert_allclose(got, want[0].transpose(1, 0, 2).reshape(N, D), **F32)


@pytest.mark.parametrize("args,word", [
    (["--window", "-2,0"], "--window"), (["--window", "3"], "--window"),
    (["--softcap", "-1"], "--softcap"), (["--q-offset", "1.5"], "--q-offset"),
    (["--k-offset", "x"], "--k-offset")])
def test_bad_modifier_options(attn, tmp_path, args, word):
    q, k, v = qkv()
    _, p = run(attn, tmp_path, "sdpa", *args, q=q, k=k, v=v, rc=2)
    assert word in p.stderr


def test_sinks_file_must_hold_one_value_per_head(attn, tmp_path):
    q, k, v = qkv()
    np.save(tmp_path / "s.npy", np.zeros(3, np.float32))
    _, p = run(attn, tmp_path, "sdpa", "--sinks", tmp_path / "s.npy", q=q, k=k, v=v, rc=3)
    assert "H=4 values" in p.stderr
    np.save(tmp_path / "s.npy", np.array([0, 0, np.nan, 0], np.float32))
    _, p = run(attn, tmp_path, "sdpa", "--sinks", tmp_path / "s.npy", q=q, k=k, v=v, rc=3)
    assert "must be finite" in p.stderr
