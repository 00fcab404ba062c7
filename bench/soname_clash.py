"""Why attn carries its own OpenBLAS (docs/threads.md): two OpenBLAS builds
share one soname, so one process gets only one of them.

Usage: /usr/bin/python3 bench/soname_clash.py LIBATTN_SO_LINKED_TO_OPENBLAS_OPENMP

Debian's libopenblas0-openmp and libopenblas0-pthread both install a
library whose soname is libopenblas.so.0. A libattn.so linked to the OpenMP
one by path (cmake -DATTN_BLAS_LINK=openmp) still names "libopenblas.so.0"
as its dependency, and the dynamic linker takes whichever is loaded first:
  - NumPy imported first: attn gets NumPy's pthread build (and its pool);
  - attn loaded first: NumPy gets the OpenMP build (its BLAS changed).
Each case runs in a fresh interpreter; prints which OpenBLAS files are
mapped and what openblas_get_parallel() says (1 pthreads, 2 OpenMP).
"""
import subprocess
import sys

CASE = r"""
import ctypes, sys
lib = sys.argv[1]
if sys.argv[2] == "numpy-first":
    import numpy as np
    a = np.ones((64, 64), np.float32); a @ a
    attn = ctypes.CDLL(lib)
else:
    attn = ctypes.CDLL(lib)
    import numpy as np
    a = np.ones((64, 64), np.float32); a @ a
attn.attn_build_info.restype = ctypes.c_char_p
maps = sorted({l.split()[-1] for l in open("/proc/self/maps") if "openblas" in l and ".so" in l})
print("   mapped:", ", ".join(maps))
print("   attn_build_info:", attn.attn_build_info().decode().split("; ")[2])
"""


def main():
    lib = sys.argv[1]
    for order in ("numpy-first", "attn-first"):
        print(f"{order}:")
        sys.stdout.flush()
        subprocess.run([sys.executable, "-c", CASE, lib, order], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
