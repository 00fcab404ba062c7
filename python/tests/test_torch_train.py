"""examples/train_char_transformer.py in a tiny configuration: both runs
train (the loss falls), start from identical weights, stay within 1% of
each other at the end, and the PNG is written."""

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "train_char_transformer.py")


def load_example():
    spec = importlib.util.spec_from_file_location("train_char_transformer", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_training_run(torch, tmp_path, capsys):
    ex = load_example()
    png = tmp_path / "curves.png"
    r = ex.main(["--steps", "12", "--batch", "4", "--seq", "32", "--d-model", "32",
                 "--heads", "2", "--layers", "1", "--lr", "1e-2", "--print-every", "4",
                 "--png", str(png)])
    out = capsys.readouterr().out
    assert "loss curves" in out and "final loss" in out and "median step time" in out
    assert r["same_init"]
    for name in ("pytorch", "attn"):
        losses = r["runs"][name]["losses"]
        assert len(losses) == 12 and all(x == x for x in losses)  # no NaN
        assert losses[-1] < losses[0] - 0.3  # it learns
    assert r["rel_diff"] < 0.01
    assert png.stat().st_size > 10000
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
