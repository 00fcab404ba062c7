"""The malformed-file corpus: every entry is (name, file bytes, expected
substring of the error message). Each must be rejected by `attn info` and
`attn run` with exit code 3 and that message, and never crash."""
import struct
import zlib

import numpy as np

from npyfiles import header, make_zip, npy_bytes, raw_npy

GOOD = npy_bytes(np.arange(6, dtype=np.float32).reshape(2, 3))
F4x2 = np.array([1, 2], dtype="<f4").tobytes()


def _npz(members, **kw):
    return make_zip(members, **kw)


def _deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def cases():
    c = []
    add = lambda name, data, msg: c.append((name, data, msg))
    # ---- .npy: magic, version, header
    add("empty.npy", b"", "bad magic")
    add("bad_magic.npy", b"\x93NUMPX\x01\x00" + GOOD[8:], "bad magic")
    add("text.npy", b"hello world, not numpy at all\n", "bad magic")
    add("magic_only.npy", GOOD[:8], "header length missing")
    add("version_4.npy", GOOD[:6] + b"\x04\x00" + GOOD[8:], "unsupported .npy format version 4.0")
    add("version_1_1.npy", GOOD[:6] + b"\x01\x01" + GOOD[8:], "unsupported .npy format version 1.1")
    add("header_truncated.npy", GOOD[:40], "header needs")
    add("header_len_huge_v2.npy", raw_npy(header(), F4x2, version=(2, 0), hlen=0x7FFFFFFF),
        "exceeds the limit of 65536")
    add("header_len_v3_huge.npy", raw_npy(header(), F4x2, version=(3, 0), hlen=0xFFFFFFFF),
        "exceeds the limit")
    add("header_no_newline.npy", raw_npy(header()[:-1] + " ", F4x2), "end with a newline")
    add("header_not_dict.npy", raw_npy("[1, 2, 3]\n", F4x2), "malformed header")
    add("header_unterminated_string.npy", raw_npy("{'descr: '<f4'\n", F4x2), "malformed header")
    add("header_missing_shape.npy", raw_npy("{'descr': '<f4', 'fortran_order': False}\n", F4x2),
        "missing key 'shape'")
    add("header_missing_descr.npy", raw_npy("{'fortran_order': False, 'shape': (2,)}\n", F4x2),
        "missing key 'descr'")
    add("header_extra_key.npy",
        raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n", F4x2),
        "unexpected or repeated key 'x'")
    add("header_repeated_key.npy",
        raw_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n",
                F4x2), "unexpected or repeated key 'descr'")
    add("header_text_after.npy", raw_npy(header()[:-1] + " junk\n", F4x2), "text after")
    add("fortran_not_bool.npy", raw_npy(header(fortran="'yes'"), F4x2), "True or False")
    add("shape_negative.npy", raw_npy(header(shape="(-2,)"), F4x2), "not a non-negative integer")
    add("shape_not_tuple.npy", raw_npy(header(shape="[2]"), F4x2), "'shape' must be a tuple")
    add("shape_float.npy", raw_npy(header(shape="(2.5,)"), F4x2), "bad 'shape' tuple")
    add("shape_digits_overflow.npy", raw_npy(header(shape="(99999999999999999999,)"), F4x2),
        "overflows int64")
    add("shape_product_overflow.npy",
        raw_npy(header(shape="(4294967296, 4294967296, 4294967296)"), F4x2),
        "overflows int64 at dimension 1")
    add("shape_too_large.npy", raw_npy(header(shape="(1073741824, 1073741824)"), F4x2),
        "exceeds the limit")
    add("rank_9.npy", raw_npy(header(shape="(1, 1, 1, 1, 1, 1, 1, 1, 1)"), F4x2[:4]),
        "more than 8 dimensions")
    add("data_truncated.npy", raw_npy(header(shape="(10,)"), F4x2), "truncated")
    add("data_too_long.npy", raw_npy(header(shape="(1,)"), F4x2), "size mismatch")
    add("data_missing.npy", raw_npy(header(shape="(3, 4)")), "needs 48 bytes of data, only 0")
    add("f8_truncated.npy", raw_npy(header(descr="<f8", shape="(2,)"), F4x2), "needs 16 bytes")
    # ---- .npy: dtypes refused
    add("dtype_int64.npy", npy_bytes(np.arange(3, dtype="<i8")), "integer dtype '<i8'")
    add("dtype_int32_be.npy", npy_bytes(np.arange(3, dtype=">i4")), "integer dtype '>i4'")
    add("dtype_uint8.npy", npy_bytes(np.arange(3, dtype="u1")), "integer dtype '|u1'")
    add("dtype_bool.npy", npy_bytes(np.array([True, False])), "dtype '|b1' is not supported")
    add("dtype_f2.npy", npy_bytes(np.arange(3, dtype="<f2")), "dtype '<f2' is not supported")
    add("dtype_c8.npy", npy_bytes(np.arange(3, dtype="<c8")), "dtype '<c8' is not supported")
    add("dtype_unicode.npy", npy_bytes(np.array(["ab", "c"])), "dtype '<U2' is not supported")
    add("dtype_object.npy", raw_npy(header(descr="|O", shape="(2,)"), b"\x80\x04" * 8),
        "object arrays")
    add("dtype_structured.npy",
        raw_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n", F4x2),
        "structured dtypes")
    add("dtype_no_order.npy", raw_npy(header(descr="f4"), F4x2), "dtype 'f4' is not supported")
    add("dtype_bar_f4.npy", raw_npy(header(descr="|f4"), F4x2), "has no byte order")
    # ---- .npz: archive structure
    good_npz = _npz([("x.npy", GOOD)])
    add("zip_garbage.npz", b"PK\x03\x04" + b"\x00" * 100, "no end of central directory")
    add("zip_cut_end.npz", good_npz[:-10], "no end of central directory")
    add("zip_cut_middle.npz", good_npz[:60] + good_npz[-22:], "lies outside the file")
    add("zip_cd_offset_lie.npz",
        good_npz[:-6] + struct.pack("<I", 0x7FFFFFF0) + good_npz[-2:], "lies outside the file")
    add("zip_entry_count_lie.npz",
        good_npz[:-12] + struct.pack("<H", 60000) + good_npz[-10:], "claims 60000 entries")
    add("zip_multidisk.npz", good_npz[:-18] + struct.pack("<H", 1) + good_npz[-16:],
        "multi-disk")
    add("zip_local_offset_lie.npz", _npz([("x.npy", GOOD)], overrides={0: {"offset": 5}}),
        "local header at offset 5")
    add("zip_needs_zip64_no_locator.npz",
        good_npz[:-22] + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                                     0xFFFFFFFF, 0), "ZIP64 locator is missing")
    add("zip64_locator_bad.npz",
        good_npz[:-22] + struct.pack("<IIQI", 0x07064B50, 0, 999999, 1) + good_npz[-22:],
        "ZIP64 end record offset 999999 is invalid")
    # ---- .npz: members lying about themselves
    add("member_crc_wrong.npz", _npz([("x.npy", GOOD)], overrides={0: {"crc": 0x12345678}}),
        "fails its CRC-32 check")
    flipped = bytearray(GOOD)
    flipped[-1] ^= 0xFF
    add("member_data_flipped.npz",
        _npz([("x.npy", GOOD)], overrides={0: {"payload": bytes(flipped)}}), "CRC-32")
    add("stored_size_lie.npz", _npz([("x.npy", GOOD)], overrides={0: {"usize": len(GOOD) - 4}}),
        "compressed size")
    add("stored_csize_past_end.npz",
        _npz([("x.npy", GOOD)], overrides={0: {"csize": 100000, "usize": 100000}}),
        "past the end")
    add("deflate_size_too_small.npz",
        _npz([("x.npy", GOOD)], method=8, overrides={0: {"usize": 50}}),
        "inflates to more than its declared size")
    add("deflate_size_too_big.npz",
        _npz([("x.npy", GOOD)], method=8, overrides={0: {"usize": len(GOOD) + 8}}),
        "inflates to %d bytes but declares %d" % (len(GOOD), len(GOOD) + 8))
    add("deflate_corrupt.npz",
        _npz([("x.npy", GOOD)], method=8,
             overrides={0: {"payload": b"\xff" * 40, "csize": 40}}), "corrupt deflate data")
    comp = _deflate(GOOD)
    add("deflate_truncated.npz",
        _npz([("x.npy", GOOD)], method=8,
             overrides={0: {"payload": comp[: len(comp) // 2]}}), "truncated")
    # A bomb: 64 MiB of zeros declared as 200 bytes; must stop at the declared size.
    zeros = _deflate(b"\x00" * (64 << 20))
    add("bomb_small_declared.npz",
        _npz([("x.npy", GOOD)], method=8,
             overrides={0: {"payload": zeros, "usize": 200, "crc": 0}}),
        "inflates to more than its declared size")
    add("bomb_ratio.npz",
        _npz([("x.npy", GOOD)], method=8, overrides={0: {"usize": 3_000_000_000}}),
        "beyond what deflate can produce")
    add("bomb_zip64_huge.npz",
        _npz([("x.npy", GOOD)], zip64_central=True, method=8,
             overrides={0: {"extra": struct.pack("<HHQQQ", 1, 24, 1 << 50, 80, 0)}}),
        "more than the limit")
    add("zip64_extra_short.npz",
        _npz([("x.npy", GOOD)], zip64_central=True,
             overrides={0: {"extra": struct.pack("<HHQ", 1, 8, len(GOOD))}}),
        "ZIP64 extra field has 8 bytes, needs 24")
    add("zip64_extra_missing.npz",
        _npz([("x.npy", GOOD)], zip64_central=True, overrides={0: {"extra": b""}}),
        "no ZIP64 extra field")
    add("zip64_extra_overrun.npz",
        _npz([("x.npy", GOOD)], overrides={0: {"extra": struct.pack("<HH", 0x7075, 400)}}),
        "extra field overruns")
    add("method_bzip2.npz", _npz([("x.npy", GOOD)], overrides={0: {"method": 12}}),
        "compression method 12")
    add("encrypted.npz", _npz([("x.npy", GOOD)], overrides={0: {"flags": 1}}), "encrypted")
    add("member_bad_npy.npz", _npz([("x.npy", b"\x93NUMPY\x09\x00" + GOOD[8:])]),
        ":x: unsupported .npy format version 9.0")
    add("member_int.npz", _npz([("x.npy", npy_bytes(np.arange(4)))]), "integer dtype")
    add("member_name_nul.npz", _npz([("x\x00y.npy", GOOD)]), "NUL byte")
    return c
