"""Shared fixtures. torch is imported once per session, only by the tests
that ask for it (it takes over a second and lowers OpenMP's global thread
count, which attn must not care about)."""

import zlib

import numpy as np
import pytest


@pytest.fixture(scope="session")
def torch():
    import torch as _torch

    _torch.manual_seed(0)
    return _torch


@pytest.fixture
def rng(request):
    # A different, reproducible stream per test.
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
