"""Allocation failures inside the C library surface as MemoryError, leave no
scratch behind, and the next call works: the binding's side of the fault
injection in tests/test_faults.c."""
import numpy as np
import pytest

import attn
from attn import _attn


def _calls():
    rng = np.random.default_rng(7)
    q = rng.standard_normal((2, 4, 70, 16)).astype(np.float32)
    k = rng.standard_normal((2, 2, 130, 16)).astype(np.float32)
    v = rng.standard_normal((2, 2, 130, 8)).astype(np.float32)
    qd = rng.standard_normal((1, 8, 1, 32)).astype(np.float32)       # decode shape
    kd = rng.standard_normal((1, 2, 3000, 32)).astype(np.float32)
    x = rng.standard_normal((2, 9, 24)).astype(np.float32)
    W = (rng.standard_normal((24, 72)) / 5).astype(np.float32)
    Wp = (rng.standard_normal((24, 24)) / 5).astype(np.float32)
    return {
        "sdpa flash": lambda: attn.sdpa(q, k, v, causal="bottom_right", return_lse=True),
        "sdpa reference + weights": lambda: attn.sdpa(q, k, v, return_weights=True),
        "sdpa decode split": lambda: attn.sdpa(qd, kd, kd, num_threads=2),
        "sdpa dropout": lambda: attn.sdpa(q, k, v, dropout_p=0.2, seed=3),
        "sdpa modifiers": lambda: attn.sdpa(q, k, v, causal="bottom_right", window=(20, 0),
                                            softcap=5.0, alibi_slopes=attn.alibi_slopes(4),
                                            sinks=[0.5, 0.0, -1.0, 2.0], return_lse=True),
        "multihead_attention_vec": lambda: attn.multihead_attention_vec(x, W, 4, Wp, do_mask=True),
        "rope": lambda: attn.rope(q, np.arange(70) + 5000, rotary_dim=8),
        "MultiHeadAttention GQA": lambda: attn.MultiHeadAttention(
            4, num_kv_heads=2, Wqkv=W[:, :48], causal="top_left")(x),
        "sdpa_backward": lambda: attn.sdpa_backward(
            q, k, v, *attn.sdpa(q, k, v, causal="bottom_right", dropout_p=0.1, return_lse=True),
            attn.sdpa(q, k, v), causal="bottom_right", dropout_p=0.1),
        "mha_backward": lambda: attn.mha_backward(
            attn.MultiHeadAttention(4, Wqkv=W, Wo=Wp, causal="top_left"), x, x)["Wqkv"],
    }


@pytest.mark.parametrize("name", list(_calls()))
def test_every_allocation_failure_is_memoryerror(name):
    call = _calls()[name]
    want = call()
    want = want[0] if isinstance(want, tuple) else want
    failures = 0
    try:
        for n in range(1, 50):
            _attn._fail_nth_alloc(n)
            try:
                got = call()
            except MemoryError as e:
                failures += 1
                assert "cannot allocate" in str(e)
                assert _attn._fail_nth_alloc(0) == 0, f"{name}: scratch leaked after failure {n}"
                continue
            live = _attn._fail_nth_alloc(0)
            assert live == 0, f"{name}: {live} blocks live after success"
            got = got[0] if isinstance(got, tuple) else got
            np.testing.assert_array_equal(got, want)
            break
        else:
            pytest.fail(f"{name}: still failing after 49 injected failures")
    finally:
        _attn._fail_nth_alloc(0)
    assert failures >= 1, f"{name}: the library allocated nothing to fail"
