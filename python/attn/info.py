"""Version, build, instruction set and the dropout hash."""

from ._convert import _attn

def build_info():
    """One line: version, BLAS or not, OpenMP or not, instruction set in use."""
    return _attn.build_info()


def get_isa():
    """The instruction set the kernels use: "generic", "avx2" or "avx512"."""
    return _attn.get_isa()


def set_isa(name):
    """Select the kernels, process-wide: "auto", "generic", "avx2", "avx512".

    Raises RuntimeError if this CPU cannot run the set. Not to be called while
    other threads are inside attn."""
    _attn.set_isa(name)


def dropout_keep(seed, b, h, i, j, p):
    """True if dropout keeps weight (b, h, i, j) under seed and probability p.

    The same pure function the C library uses (see attn_dropout_keep in
    attn.h): a splitmix64 hash of (seed, b, h, i, j), h the query head."""
    return _attn.dropout_keep(seed, b, h, i, j, p)


