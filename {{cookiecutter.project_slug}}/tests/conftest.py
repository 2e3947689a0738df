"""Fixtures of this project's tests (each TestContract brings its own): `device`, and a fresh start."""

import pytest
import torch
from torch_scipy_op.testing import DEVICES


@pytest.fixture(params=DEVICES)
def device(request):
    """The CPU, and CUDA where this machine has one."""
    return request.param


@pytest.fixture(autouse=True)
def fresh_start():
    """One seed per test, and torch.compile's caches of earlier tests' frames emptied."""
    torch._dynamo.reset()
    torch.manual_seed(0)
