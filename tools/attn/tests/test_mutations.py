"""Robustness: deterministic random corruptions of valid .npy and .npz files
(byte flips, truncations, inserted bytes). Every run must end with exit 0
(the damage was harmless, e.g. in padding or data) or 3 with a message, and
never with a signal. Run the suite on a sanitizer build to catch silent
out-of-bounds reads as well."""
import random

import numpy as np
import pytest

from npyfiles import make_zip, npy_bytes

A = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7


def seeds():
    yield "npy_v1", npy_bytes(A)
    yield "npy_v3_f8_be", npy_bytes(A.astype(">f8"), version=(3, 0))
    yield "npz_stored", make_zip([("x.npy", npy_bytes(A)), ("y.npy", npy_bytes(A.T))])
    yield "npz_deflate_zip64", make_zip([("x.npy", npy_bytes(A))], method=8, zip64_central=True,
                                        zip64_end=True)
    yield "npz_descriptor", make_zip([("x.npy", npy_bytes(A))], method=8, descriptor=True)


def mutate(data, rnd):
    b = bytearray(data)
    kind = rnd.randrange(4)
    if kind == 0:  # flip bytes
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
    elif kind == 1:  # truncate
        del b[rnd.randrange(len(b)):]
    elif kind == 2:  # set a 16/32-bit field to an extreme value
        pos = rnd.randrange(max(1, len(b) - 4))
        b[pos:pos + 4] = rnd.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\x00\x00",
                                     b"\x00\x00\x00\x80"])
    else:  # insert or delete a run of bytes
        pos = rnd.randrange(len(b))
        if rnd.random() < 0.5:
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
        else:
            del b[pos:pos + rnd.randint(1, 16)]
    return bytes(b)


@pytest.mark.parametrize("name,data", list(seeds()), ids=[s[0] for s in seeds()])
def test_mutations_never_crash(attn, tmp_path, name, data):
    rnd = random.Random(name)
    suffix = ".npz" if name.startswith("npz") else ".npy"
    outcomes = {0: 0, 3: 0}
    for n in range(60):
        path = tmp_path / ("m%d%s" % (n, suffix))
        path.write_bytes(mutate(data, rnd))
        p = attn("info", path, rc=None)
        assert p.returncode in (0, 3), "mutation %d of %s: exit %d\n%s" % (
            n, name, p.returncode, p.stderr)
        if p.returncode == 3:
            assert str(path) in p.stderr and len(p.stderr.strip()) > len(str(path)) + 5
        outcomes[p.returncode] += 1
    assert outcomes[3] > 0  # the corruptions were noticed
