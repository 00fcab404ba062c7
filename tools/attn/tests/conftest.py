"""Shared fixtures: the attn binary (ATTN_BIN, set by ctest) and a runner."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def _binary():
    path = os.environ.get("ATTN_BIN")
    if not path:
        raise RuntimeError("set ATTN_BIN to the attn executable (ctest does this)")
    if not os.access(path, os.X_OK):
        raise RuntimeError("ATTN_BIN=%s is not an executable" % path)
    return path


@pytest.fixture(scope="session")
def attn_bin():
    return _binary()


class Runner:
    def __init__(self, binary):
        self.binary = binary

    def __call__(self, *args, rc=0, env=None, timeout=120):
        full_env = dict(os.environ)
        full_env.pop("ATTN_ISA", None)
        for k, v in (env or {}).items():  # None: unset
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        p = subprocess.run([self.binary] + [str(a) for a in args], capture_output=True,
                           text=True, errors="replace", env=full_env,
                           timeout=timeout)
        if rc is not None and p.returncode != rc:
            raise AssertionError("attn %s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(map(str, args)), p.returncode, rc, p.stdout, p.stderr))
        assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
        return p


@pytest.fixture(scope="session")
def attn(attn_bin):
    return Runner(attn_bin)
