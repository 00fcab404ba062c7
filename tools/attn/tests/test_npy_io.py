"""The .npy/.npz reader and writer, end to end through `attn info` and
`attn run softmax`: every format NumPy writes is read correctly, and every
file of the malformed corpus is rejected with its message and exit code 3."""
import os

import numpy as np
import pytest

import corpus
from npyfiles import make_zip, npy_bytes


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def roundtrip(attn, tmp_path, spec, expect):
    out = tmp_path / "out.npy"
    attn("run", "softmax", "--x", spec, "-o", out)
    got = np.load(out)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    assert got.shape == expect.shape
    np.testing.assert_allclose(got, softmax(expect.astype(np.float32)), rtol=2e-6, atol=1e-7)


RNG = np.random.default_rng(7)
A = RNG.standard_normal((3, 5, 7)).astype(np.float32)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", ">f8"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_formats(attn, tmp_path, version, dtype, order):
    arr = np.array(A.astype(dtype), order=order)
    path = tmp_path / "a.npy"
    path.write_bytes(npy_bytes(arr, version=version))
    roundtrip(attn, tmp_path, path, A)
    info = attn("info", path).stdout
    assert "shape (3, 5, 7)" in info and dtype in info
    assert ("Fortran" if order == "F" else "C order") in info


def test_np_save_transposed(attn, tmp_path):
    """np.save(W.T) writes Fortran order; the values must be W.T's."""
    W = RNG.standard_normal((4, 6)).astype(np.float32)
    np.save(tmp_path / "wt.npy", W.T)
    assert "Fortran" in attn("info", tmp_path / "wt.npy").stdout
    roundtrip(attn, tmp_path, tmp_path / "wt.npy", W.T)


def test_float64_values_converted(attn, tmp_path):
    x = np.array([[1e-3, 2.5, -7.25, 1e30]], dtype=np.float64)
    np.save(tmp_path / "x.npy", x)
    roundtrip(attn, tmp_path, tmp_path / "x.npy", x.astype(np.float32))


def test_savez_members(attn, tmp_path):
    b = RNG.standard_normal((2, 9)).astype(np.float64)
    np.savez(tmp_path / "s.npz", a=A, b=b)
    np.savez_compressed(tmp_path / "c.npz", a=A, b=b)
    np.savez(tmp_path / "one.npz", A)
    for f in ("s.npz", "c.npz"):
        roundtrip(attn, tmp_path, "%s:a" % (tmp_path / f), A)
        roundtrip(attn, tmp_path, "%s:b.npy" % (tmp_path / f), b.astype(np.float32))
    roundtrip(attn, tmp_path, tmp_path / "one.npz", A)  # a single member needs no name
    info = attn("info", tmp_path / "c.npz").stdout
    assert "c.npz:a.npy: shape (3, 5, 7)" in info and "deflate" in info
    p = attn("run", "softmax", "--x", tmp_path / "s.npz", "-o", tmp_path / "o.npy", rc=3)
    # Without a member name, the array named like the option (--x: x) is taken.
    assert "no array 'x'" in p.stderr and "members: a.npy, b.npy" in p.stderr
    np.savez(tmp_path / "named.npz", x=A, other=b)
    roundtrip(attn, tmp_path, tmp_path / "named.npz", A)
    p = attn("run", "softmax", "--x", "%s:zz" % (tmp_path / "s.npz"), "-o", tmp_path / "o.npy",
             rc=3)
    assert "no array 'zz'" in p.stderr


@pytest.mark.parametrize("kw", [
    dict(), dict(method=8), dict(zip64_central=True), dict(zip64_end=True, method=8),
    dict(descriptor=True, method=8), dict(zip64_central=True, zip64_end=True, descriptor=True),
], ids=["stored", "deflate", "zip64-extra", "zip64-end", "data-descriptor", "zip64-all"])
def test_zip_variants(attn, tmp_path, kw):
    """ZIP64 extra fields (sizes 0xFFFFFFFF), ZIP64 end records and data
    descriptors, built byte by byte; NumPy itself must read them too."""
    big = A.astype(">f8")
    data = make_zip([("x.npy", npy_bytes(big)), ("y.npy", npy_bytes(A.T, version=(2, 0)))], **kw)
    path = tmp_path / "v.npz"
    path.write_bytes(data)
    with np.load(path) as z:  # the builder is valid for NumPy as well
        np.testing.assert_array_equal(z["x"], big)
    roundtrip(attn, tmp_path, "%s:x" % path, A)
    roundtrip(attn, tmp_path, "%s:y" % path, A.T)


def test_data_descriptor_from_python_zipfile(attn, tmp_path):
    """Python's zipfile writing to a non-seekable stream uses data descriptors."""
    import io
    import zipfile

    class Unseekable(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            f.write(npy_bytes(A))
    path = tmp_path / "d.npz"
    path.write_bytes(bytes(sink.buf))
    roundtrip(attn, tmp_path, "%s:x" % path, A)


def test_output_is_npy_v1_aligned(attn, tmp_path):
    np.save(tmp_path / "x.npy", A)
    attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", tmp_path / "o.npy")
    raw = (tmp_path / "o.npy").read_bytes()
    assert raw[:8] == b"\x93NUMPY\x01\x00"
    hlen = raw[8] | raw[9] << 8
    assert (10 + hlen) % 64 == 0
    assert len(raw) == 10 + hlen + A.size * 4


CASES = corpus.cases()


@pytest.mark.parametrize("name,data,message", CASES, ids=[c[0] for c in CASES])
def test_malformed_corpus(attn, tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    if "integer dtype" in message:  # info lists integer arrays; run refuses them
        assert "dtype" in attn("info", path).stdout
    else:
        p = attn("info", path, rc=3)
        assert message in p.stderr, p.stderr
        assert name in p.stderr  # the file is named
    out = tmp_path / "out.npy"
    p = attn("run", "softmax", "--x", path, "-o", out, rc=3)
    assert message in p.stderr and "--x" in p.stderr, p.stderr
    assert not out.exists()


def test_corpus_is_big_enough():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("shape,message", [
    ((2, 1, 1, 1, 1), "rank 5: attn takes arrays of rank 1 to 4"),
    ((0, 3), "dimension 0 is 0"),
    ((), "rank 0"),
])
def test_valid_npy_but_unusable(attn, tmp_path, shape, message):
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.float32))
    attn("info", tmp_path / "x.npy")  # readable
    p = attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", tmp_path / "o.npy", rc=3)
    assert message in p.stderr and "x.npy" in p.stderr


def test_missing_file(attn, tmp_path):
    p = attn("run", "softmax", "--x", tmp_path / "nope.npy", "-o", tmp_path / "o.npy", rc=3)
    assert "nope.npy: cannot open" in p.stderr


def test_unwritable_output(attn, tmp_path):
    np.save(tmp_path / "x.npy", A)
    p = attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", tmp_path / "no" / "o.npy", rc=4)
    assert "cannot write" in p.stderr
