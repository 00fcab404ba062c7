"""Build hook of pyproject.toml: the extension is built by the project's own
CMake build (the same flags, kernels and checks as `make`), with the C library
linked in statically, then copied into the wheel next to the Python sources.

Environment: ATTN_CMAKE_ARGS adds CMake arguments (e.g. -DATTN_BLAS=OFF).
"""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = Path(self.build_temp).resolve() / "cmake"
        args = [
            "cmake", "-S", str(ROOT), "-B", str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DATTN_CLI=OFF",
        ] + shlex.split(os.environ.get("ATTN_CMAKE_ARGS", ""))
        subprocess.check_call(args)
        subprocess.check_call(["cmake", "--build", str(build), "-j2", "--target", "attn_python"])
        built = build / "python" / "attn"
        dest = Path(self.get_ext_fullpath(ext.name)).parent
        dest.mkdir(parents=True, exist_ok=True)
        libs = sorted(built.glob("*.so"))
        if not libs:
            raise RuntimeError(f"the CMake build left no extension in {built}")
        for lib in libs:
            shutil.copy2(lib, dest / lib.name)


setup(ext_modules=[Extension("attn._attn", sources=[])], cmdclass={"build_ext": CMakeBuild})
