"""The pictures: `attn explain --visibility` (terminal grid and --png),
and bench/plot.py on a saved `make bench` output.

The visibility grid is checked against design.md's rule written again here
in plain Python (positions, causal, window, key length), so a window or
alignment off-by-one in the library or in the drawing shows up."""
import itertools
import os
import struct
import subprocess
import zlib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def expected_grid(Nq, Nkv, L, causal, left, right, q_offset=None, k_offset=0):
    """Rows of '#', '.', '@' and '-' by the contract of attn.h / design.md."""
    if q_offset is None:
        q_offset = 0 if causal == "top-left" else L - Nq
    rows = []
    for i in range(Nq):
        p, row = q_offset + i, ""
        for j in range(Nkv):
            dist = p - (k_offset + j)
            vis = (j < L and (causal == "none" or dist >= 0)
                   and (left < 0 or dist <= left) and (right < 0 or -dist <= right))
            row += "-" if j >= L else ("@" if dist == 0 else "#") if vis else "."
        rows.append(row)
    return rows


def grid_rows(out, sinks=False):
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] == "q" and f[2] == "@":  # "q  i @ position [S] grid n keys"
            rows.append(f[5] if sinks else f[4])
    return rows


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB PNG, by hand."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", None, None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (depth, ctype) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, rows, prev = zlib.decompress(idat), [], bytearray(3 * w)
    stride = 3 * w + 1
    for r in range(h):
        ft, line = raw[r * stride], bytearray(raw[r * stride + 1:(r + 1) * stride])
        for x in range(3 * w):  # undo the PNG filters
            a = line[x - 3] if x >= 3 else 0
            b, c = prev[x], prev[x - 3] if x >= 3 else 0
            if ft == 1: line[x] = (line[x] + a) & 255
            elif ft == 2: line[x] = (line[x] + b) & 255
            elif ft == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif ft == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[3 * x:3 * x + 3]) for x in range(w)])
        prev = line
    return w, h, rows


CASES = list(itertools.product([1, 3], [0, 5], ["none", "top-left", "bottom-right"],
                               [-1, 0, 1, 4], [-1, 0, 2]))


@pytest.mark.parametrize("Nq,extra,causal,left,right", CASES)
def test_visibility_grid_matches_the_rule(attn, Nq, extra, causal, left, right):
    Nkv = Nq + extra
    out = attn("explain", "--visibility", "--seq", Nq, "--nkv", Nkv, "--causal", causal,
               "--window", "%d,%d" % (left, right)).stdout
    assert grid_rows(out) == expected_grid(Nq, Nkv, Nkv, causal, left, right), out


@pytest.mark.parametrize("q_offset,k_offset,L", [(0, 0, 7), (10, 8, 9), (-3, 0, 12), (5, 2, 0)])
def test_visibility_offsets_and_key_length(attn, q_offset, k_offset, L):
    out = attn("explain", "--visibility", "--seq", 4, "--nkv", 12, "--causal", "bottom-right",
               "--window", "3,-1", "--key-length", L, "--q-offset", q_offset,
               "--k-offset", k_offset).stdout
    assert grid_rows(out) == expected_grid(4, 12, L, "bottom-right", 3, -1, q_offset, k_offset)


def test_sliding_window_sees_S_keys_and_sink_column(attn):
    # A model's sliding_window = 4 is --window 3,-1: 4 keys at the diagonal.
    out = attn("explain", "--visibility", "--seq", 8, "--causal", "top-left", "--window", "3,-1",
               "--sinks").stdout
    rows = grid_rows(out, sinks=True)
    assert [r.count("#") + r.count("@") for r in rows] == [1, 2, 3, 4, 4, 4, 4, 4]
    assert all(line.split()[4] == "S" for line in out.splitlines() if line.startswith("  q "))


def test_visibility_png(attn, tmp_path):
    png = tmp_path / "grid.png"
    out = attn("explain", "--visibility", "--seq", 3, "--nkv", 5, "--causal", "bottom-right",
               "--key-length", 4, "--png", png).stdout
    assert "wrote" in out
    w, h, px = read_png(png)
    rows = expected_grid(3, 5, 4, "bottom-right", -1, -1)
    cell = (h - 2) // 3
    assert w == 5 * cell + 2 and h == 3 * cell + 2
    colour = {"#": (49, 104, 142), "@": (20, 40, 90), ".": (210, 210, 210), "-": (243, 243, 243)}
    for i, row in enumerate(rows):
        for j, ch in enumerate(row):
            assert px[1 + i * cell + cell // 2][1 + j * cell + cell // 2] == colour[ch], (i, j, ch)


def test_visibility_errors(attn, tmp_path):
    assert "--window takes" in attn("explain", "--visibility", "--window", "3", rc=2).stderr
    assert "--key-length" in attn("explain", "--visibility", "--nkv", 4, "--key-length", 5,
                                  rc=2).stderr
    assert "at most" not in attn("explain", "--visibility", "--help").stderr
    r = attn("explain", "--visibility", "--png", tmp_path / "no" / "such" / "dir.png", rc=4)
    assert "cannot write" in r.stderr
    assert not (tmp_path / "no").exists()


def test_bench_plot(tmp_path):
    png = tmp_path / "bench.png"
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "plot.py"),
                    os.path.join(ROOT, "docs", "img", "bench-2026-11-28.txt"), str(png)],
                   check=True, capture_output=True)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert w > 800 and h > 400


def test_weights_png(attn, tmp_path):
    import numpy as np
    rng = np.random.default_rng(3)
    B, H, Nq, Nkv, d = 2, 3, 5, 7, 4
    for name, shape in (("q", (B, H, Nq, d)), ("k", (B, H, Nkv, d)), ("v", (B, H, Nkv, d))):
        np.save(tmp_path / (name + ".npy"), rng.standard_normal(shape).astype(np.float32))
    png, wout = tmp_path / "w.png", tmp_path / "w.npy"
    attn("run", "sdpa", "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy",
         "--v", tmp_path / "v.npy", "--causal", "bottom_right", "-o", tmp_path / "o.npy",
         "--weights-out", wout, "--weights-png", png)
    w = np.load(wout)
    width, height, px = read_png(png)
    panels, gap = B * H, 4
    cell = (width - gap) // panels - gap
    cell //= Nkv
    assert width == panels * (Nkv * cell + gap) + gap and height == Nq * cell + 2 * gap
    violet, yellow = (69, 0, 84), (252, 232, 36)
    for p in range(panels):
        b, h = divmod(p, H)
        wp = w[b, h]
        i, j = np.unravel_index(np.argmax(wp), wp.shape)
        x0 = gap + p * (Nkv * cell + gap)
        centre = lambda i, j: px[gap + i * cell + cell // 2][x0 + j * cell + cell // 2]
        assert centre(i, j) == yellow, (p, i, j)
        assert centre(0, Nkv - 1) == violet  # hidden by the causal rule: weight 0


def test_weights_png_refused_where_it_cannot_go(attn, tmp_path):
    import numpy as np
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    r = attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
             "--weights-png", tmp_path / "w.png", rc=2)
    assert "--weights-png" in r.stderr
    q = tmp_path / "x.npy"
    r = attn("run", "sdpa", "--q", q, "--k", q, "--v", q, "-o", tmp_path / "o.npy",
             "--weights-png", q, rc=None)
    assert r.returncode != 0 and "same file" in r.stderr
