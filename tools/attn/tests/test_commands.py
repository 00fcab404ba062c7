"""demo, explain, bench, --help and --version: the printed shape flow, the
check of demo, and the documented options and exit codes."""
import re

import pytest


def shape_line(out, step):
    """The (first) line of the flow table for a step: '  N  name  ...'."""
    for line in out.splitlines():
        f = line.split()
        if len(f) > 2 and f[0].isdigit() and f[1] == step:
            return line
    raise AssertionError("no step %r in:\n%s" % (step, out))


def test_explain_gpt2_default(attn):
    out = attn("explain").stdout
    assert "B=1 Nq=1024 Nkv=1024 D=768 H=12 HS=64" in out
    expect = {
        "x": "(1, 1024, 768)", "qkv": "(1, 1024, 2304)", "q": "(1, 12, 1024, 64)",
        "k": "(1, 12, 1024, 64)", "v": "(1, 12, 1024, 64)", "scores": "(1, 12, 1024, 1024)",
        "weights": "(1, 12, 1024, 1024)", "heads": "(1, 12, 1024, 64)",
        "concat": "(1, 1024, 768)", "out": "(1, 1024, 768)",
    }
    for step, shape in expect.items():
        assert shape in shape_line(out, step), step
    assert "bhid,bhjd->bhij" in shape_line(out, "scores")
    assert "bhij,bhjd->bhid" in shape_line(out, "heads")
    assert "bnc,ck->bnk" in shape_line(out, "qkv")
    assert "-inf where j > i" in shape_line(out, "scores")


def test_explain_gqa_cross(attn):
    out = attn("explain", "--batch", 2, "--seq", 5, "--nkv", 9, "--dim", 64, "--heads", 8,
               "--gqa-kv-heads", 2, "--causal", "bottom-right").stdout
    assert "cross-attention" in out
    assert "(2, 8, 5, 8)" in shape_line(out, "q")
    assert "(2, 2, 9, 8)" in shape_line(out, "k")
    assert "(2, 9, 32)" in shape_line(out, "kvp")  # [k | v], 2 kv heads of 8
    line = shape_line(out, "scores")
    assert "(2, 8, 5, 9)" in line and "bhid,bgjd->bhij" in line and "g = h / 4" in line
    assert "j > i + Nkv - Nq" in line
    assert "(2, 5, 64)" in shape_line(out, "out")


def test_explain_rejects_bad_config(attn):
    assert "not a multiple of --gqa-kv-heads" in attn(
        "explain", "--heads", 6, "--gqa-kv-heads", 4, rc=2).stderr
    assert "needs --cross" not in attn("explain", "--nkv", 5).stderr


def test_demo_small(attn):
    p = attn("demo", "--seq", 64, "--dim", 96, "--heads", 4, "--batch", 2, "--threads", 2)
    out = p.stdout
    assert "B=2 Nq=64 Nkv=64 D=96 H=4 HS=24" in out
    assert "(2, 64, 288)" in shape_line(out, "qkv")
    assert "(2, 4, 64, 64)" in shape_line(out, "scores")
    # The computed views, checked against the flow, with their strides.
    assert re.search(r"^\s+q\s+\(2, 4, 64, 24\)\s+strides \(18432, 24, 288, 1\)", out, re.M)
    assert re.search(r"^\s+heads\s+\(2, 4, 64, 24\)\s+strides \(6144, 24, 96, 1\)", out, re.M)
    assert re.search(r"^\s+weights\s+\(2, 4, 64, 64\)", out, re.M)
    assert "differs from the flow" not in out
    assert "0 nonzero above the diagonal: ok" in out
    m = re.search(r"max \|reference - fast\| = (\S+),", out)
    assert m and float(m.group(1)) < 1e-4
    assert "PASS" in out and "FAIL" not in out
    for row in ("attention, reference", "attention, fast", "whole layer, attn_mha"):
        assert re.search(re.escape(row) + r"\s+[\d.]+ ms\s+[\d.]+", out), row


def test_demo_generic_isa(attn):
    out = attn("demo", "--seq", 32, "--dim", 64, "--heads", 2, env={"ATTN_ISA": "generic"}).stdout
    assert "isa generic" in out and "PASS" in out


def test_bench_quick(attn):
    p = attn("bench", "--quick", "--filter", "gpt2", "--repeat", 1)
    rows = [l for l in p.stdout.splitlines() if l.startswith("gpt2-")]
    assert len(rows) == 2
    for r in rows:
        f = r.split()
        assert float(f[3]) > 0 and float(f[5]) > 0 and f[7].endswith("x")
    assert "[1/2] gpt2-prefill" in p.stderr and "[2/2] gpt2-full" in p.stderr


def test_version(attn):
    out = attn("--version").stdout
    assert re.search(r"^attn \d+\.\d+\.\d+$", out, re.M)
    assert re.search(r"^isa: (generic|avx2|avx512) ", out, re.M)
    assert re.search(r"^threads: \d+", out, re.M)
    assert "build: attn" in out and "blas" in out
    assert "isa: avx2" in attn("--version", env={"ATTN_ISA": "avx2"}).stdout


def test_blas_core_choice(attn):
    """The user's OPENBLAS_CORETYPE stands; unset, attn's private OpenBLAS on a
    CPU with AVX2 never runs the SSE3 kernels ("Prescott") OpenBLAS falls back
    to on CPUs newer than itself (src/blas_core.c)."""
    forced = attn("--version", env={"OPENBLAS_CORETYPE": "Prescott"}).stdout
    if "private static copy" not in forced:
        pytest.skip("not built with attn's private OpenBLAS")
    assert "; core Prescott)" in forced, forced
    auto = attn("--version", env={"OPENBLAS_CORETYPE": None}).stdout
    core = re.search(r"; core (\w+)", auto).group(1)
    if re.search(r"supported: [^)]*avx2", auto):
        assert core != "Prescott", auto


@pytest.mark.parametrize("cmd", [[], ["demo"], ["explain"], ["run"], ["bench"], ["info"]])
def test_help(attn, cmd):
    out = attn(*(cmd + ["--help"])).stdout
    assert out.startswith("Usage: attn")
    assert "Exit codes:" in out and "3  input file error" in out and "2  usage error" in out


def test_run_help_documents_syntax(attn):
    out = attn("run", "--help").stdout
    for word in ("softmax", "layer-norm", "self", "cross", "mha", "sdpa", "--npz",
                 "file.npz:NAME", "--layout xw|torch", "--key-lengths", "--dropout",
                 "bottom_right", "--Wqkv", "--heads"):
        assert word in out, word


def test_no_command_is_usage_error(attn):
    assert "Usage: attn" in attn(rc=2).stderr
