#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Run once after changing a target's input format; the files are committed.
fuzz_npy: real .npy / .npz files from NumPy (every dtype, order and version
the reader supports). fuzz_api / fuzz_diff: inputs that drive each entry
point or option down its valid path (the fuzzer mutates from there)."""
import io
import os
import random
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def npy_bytes(a, version=None):
    b = io.BytesIO()
    if version is None:
        np.save(b, a)
    else:
        np.lib.format.write_array(b, a, version=version)
    return b.getvalue()


def npz_bytes(arrays, compressed):
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, **arrays)
    return b.getvalue()


def seeds_npy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    put("fuzz_npy", "f4_c.npy", npy_bytes(x))
    put("fuzz_npy", "f8_be_fortran.npy", npy_bytes(np.asfortranarray(x.astype(">f8"))))
    put("fuzz_npy", "f4_4d.npy", npy_bytes(rng.standard_normal((1, 2, 2, 3)).astype(np.float32)))
    put("fuzz_npy", "i8.npy", npy_bytes(np.array([3, 1, 4], dtype=np.int64)))
    put("fuzz_npy", "u1.npy", npy_bytes(np.array([7, 0], dtype=np.uint8)))
    put("fuzz_npy", "scalar.npy", npy_bytes(np.array(1.5, dtype=np.float32)))
    put("fuzz_npy", "empty.npy", npy_bytes(np.zeros((0, 3), dtype=np.float32)))
    put("fuzz_npy", "v2.npy", npy_bytes(x, version=(2, 0)))
    put("fuzz_npy", "v3.npy", npy_bytes(x, version=(3, 0)))
    arrays = {"x": x, "Wq": rng.standard_normal((3, 2)).astype(np.float32),
              "lengths": np.array([2], dtype=np.int32)}
    put("fuzz_npy", "stored.npz", npz_bytes(arrays, False))
    put("fuzz_npy", "deflate.npz", npz_bytes(arrays, True))
    b = io.BytesIO()  # a data descriptor (flag bit 3), as a streamed writer makes
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(npy_bytes(x))
    put("fuzz_npy", "zip64_stream.npz", b.getvalue())


def seeds_api():
    # Layout: 8 sizes, value mode, ISA, fail byte, then the call selector and
    # its arguments; zero bytes mean "the preferred rank, shared size 0,
    # contiguous, offset 0, not NULL".
    rnd = random.Random(1)
    # Selectors 0..11 are calls 0..11; 240..243 reach the decoder calls 12..15.
    for which in list(range(12)) + [240, 241, 242, 243]:
        for variant, sizes in enumerate(([2, 3, 1, 4, 2, 3, 2, 1], [1, 1, 1, 1, 1, 1, 1, 1],
                                         [3, 2, 4, 1, 2, 1, 3, 2])):
            head = bytes(s - 1 for s in sizes) + bytes([0, 0, 0, which])
            body = bytes(300) if variant < 2 else bytes(rnd.randrange(256) for _ in range(300))
            call = which if which < 12 else 12 + which - 240
            put("fuzz_api", "call%02d_%d" % (call, variant), head + body)
    # attn_kv_append_rope: the rope selector, then a path byte >= 208.
    put("fuzz_api", "call12_kv", bytes([1, 2, 0, 3, 1, 2, 1, 0, 0, 0, 0, 240, 208]) + bytes(300))
    # sdpa then attn_sdpa_backward: with the zero bodies above the byte that
    # selects the backward is read at offset 70.
    for variant, sizes in enumerate(([2, 3, 1, 4, 2, 3, 2, 1], [1, 1, 1, 1, 1, 1, 1, 1])):
        data = bytearray(bytes(s - 1 for s in sizes) + bytes([0, 0, 0, 1]) + bytes(300))
        data[70] = 0xB7
        put("fuzz_api", "call01_backward_%d" % variant, bytes(data))
    # linear then the packed product (attn_weight_pack, attn_linear_packed):
    # with zero bodies the byte that selects it is read at offset 57; byte 75
    # moves y away from the packed weight; bytes 82-84 pick the bias and the
    # thread count in the third.
    for variant, sizes in enumerate(([2, 3, 1, 4, 2, 3, 2, 1], [1, 1, 1, 1, 1, 1, 1, 1],
                                     [3, 2, 4, 1, 2, 1, 3, 2])):
        data = bytearray(bytes(s - 1 for s in sizes) + bytes([0, 0, 0, 3]) + bytes(300))
        data[57], data[75] = 0xB8, 0x05
        if variant == 2:
            data[82] = data[83] = data[84] = 1
        put("fuzz_api", "call03_packed_%d" % variant, bytes(data))
    # The fold (call 16: selector bytes 244, 249, 254), with its own stream.
    rnd = random.Random(2)
    for variant, sizes in enumerate(([2, 3, 1, 4, 2, 3, 2, 1], [1, 1, 1, 1, 1, 1, 1, 1],
                                     [3, 2, 4, 1, 2, 1, 3, 2], [2, 2, 2, 2, 2, 2, 2, 2])):
        head = bytes(s - 1 for s in sizes) + bytes([0, 0, 0, (244, 249, 254, 244)[variant]])
        body = bytes(300) if variant < 2 else bytes(rnd.randrange(256) for _ in range(300))
        put("fuzz_api", "call16_%d" % variant, head + body)


def seeds_diff():
    rnd = random.Random(2)
    for n in range(16):
        put("fuzz_diff", "seed%02d" % n, bytes(rnd.randrange(256) for _ in range(32)))
    # Long keys (several chunks), a mask, key lengths.
    put("fuzz_diff", "long_keys", bytes([0, 1, 1, 3, 250, 15, 15, 0, 0x80, 0x21]) + bytes(22))
    # NaN in a visible query element; NaN in a visible mask entry.
    head = bytes([1, 1, 1, 30, 90, 15, 7, 0, 0x04]) + bytes([0x0F]) + bytes(range(1, 9)) + bytes([1, 2])
    put("fuzz_diff", "nan_query", head + bytes([230, 77]))
    put("fuzz_diff", "nan_mask", head + bytes([170, 33]))


def seeds_kv():
    # A valid cache (nb, bs, Hkv, d, dv, dtype index, no failure), then ops:
    # kind, B, max_blocks, table bytes, starts/counts, ...; the rest random.
    rnd = random.Random(3)
    for dt in range(3):
        for n in range(4):
            head = bytes([2 + n % 3, 0, n % 3, 2 + n, 3, dt, 0])
            ops = bytes(rnd.randrange(230) for _ in range(400))
            put("fuzz_kv", "dt%d_%d" % (dt, n), head + ops)
    # append then attend on one sequence
    head = bytes([4, 1, 1, 3, 2, 1, 0])
    append = bytes([0, 0, 3, 0, 1, 2, 0, 3, 3, 1, 0, 0]) + bytes(rnd.randrange(200) for _ in range(64))
    attend = bytes([3, 0, 3, 0, 1, 2, 40, 0, 1, 0, 0, 0, 35, 1, 0x40]) + bytes(64)
    put("fuzz_kv", "append_attend", head + append + attend)


if __name__ == "__main__":
    seeds_npy()
    seeds_api()
    seeds_diff()
    seeds_kv()
