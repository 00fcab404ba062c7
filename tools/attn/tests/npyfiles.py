"""Byte-level builders for .npy files and ZIP archives (.npz), so tests can
write exactly what NumPy writes and exactly what it never would."""
import struct
import zlib

import numpy as np

MAGIC = b"\x93NUMPY"


def npy_bytes(arr, version=(1, 0)):
    """A .npy image as NumPy writes it (any version)."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), version=version)
    return buf.getvalue()


def raw_npy(header, data=b"", version=(1, 0), hlen=None):
    """A .npy image with a hand-written header dict (str) and raw data."""
    h = header.encode("latin1")
    if hlen is None:
        hlen = len(h)
    if version[0] == 1:
        pre = MAGIC + bytes(version) + struct.pack("<H", hlen)
    else:
        pre = MAGIC + bytes(version) + struct.pack("<I", hlen)
    return pre + h + data


def header(descr="<f4", fortran="False", shape="(2,)"):
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }\n" % (descr, fortran, shape)


def make_zip(members, method=0, zip64_central=False, zip64_end=False,
             descriptor=False, overrides=None):
    """Build a ZIP archive. members: list of (name, bytes). overrides maps a
    member index to a dict that replaces central-directory values (crc,
    csize, usize, method, flags, offset) or 'payload' (the stored bytes),
    so an entry can lie about itself."""
    overrides = overrides or {}
    out = bytearray()
    central = bytearray()
    for i, (name, data) in enumerate(members):
        ov = overrides.get(i, {})
        name_b = name.encode()
        m = ov.get("method", method)
        payload = data
        if m == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = c.compress(data) + c.flush()
        payload = ov.get("payload", payload)
        crc = ov.get("crc", zlib.crc32(data) & 0xFFFFFFFF)
        csize = ov.get("csize", len(payload))
        usize = ov.get("usize", len(data))
        flags = ov.get("flags", 0) | (8 if descriptor else 0)
        offset = len(out)
        loc_extra = b""
        loc_crc, loc_cs, loc_us = (0, 0, 0) if descriptor else (crc, csize, usize)
        if zip64_central:
            loc_extra = struct.pack("<HHQQ", 1, 16, usize, csize)
            loc_cs = loc_us = 0xFFFFFFFF
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64_central else 20,
                           flags, m, 0, 0x21, loc_crc, loc_cs, loc_us,
                           len(name_b), len(loc_extra))
        out += name_b + loc_extra + payload
        if descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, csize & 0xFFFFFFFF, usize & 0xFFFFFFFF)
        offset = ov.get("offset", offset)
        if zip64_central:
            extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset)
            if "extra" in ov:
                extra = ov["extra"]
            c_cs = c_us = c_off = 0xFFFFFFFF
        else:
            extra = ov.get("extra", b"")
            c_cs, c_us, c_off = csize & 0xFFFFFFFF, usize & 0xFFFFFFFF, offset
            c_cs = ov.get("csize32", c_cs)
            c_us = ov.get("usize32", c_us)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, flags, m, 0,
                               0x21, crc, c_cs, c_us, len(name_b), len(extra), 0, 0, 0,
                               0x81A4 << 16, c_off)
        central += name_b + extra
    cd_off = len(out)
    out += central
    n = ov_n = len(members)
    if zip64_end:
        e64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n,
                           len(central), cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, e64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF,
                           0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, ov_n, ov_n, len(central),
                           cd_off, 0)
    return bytes(out)
