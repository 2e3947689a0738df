"""Shared fixtures: every test that takes `device` runs on the CPU, and on CUDA where it can."""

import importlib.util

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
HAS_CUPY = importlib.util.find_spec("cupy") is not None

needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
needs_cupy = pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy (the [cuda] extra)")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, needs_cuda, needs_cupy])])
def device(request):
    return request.param


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU; skipped without one or without CuPy")


def tolerances(dtype):
    """Tolerances for comparing FFT and direct sums with native torch in `dtype`."""
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}
