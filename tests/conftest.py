"""Fixtures of this repository's own tests (each op's contract brings its own): `device`, and every test on its own."""

import pytest
import torch
import torch._dynamo
import torch._functorch.config
import torch._inductor.config
from torch_scipy_op.testing import DEVICES

# torch.compile's on-disk caches key a graph by the ops' names, not their schemas or fakes
# (pytorch/pytorch#187319): after an op changes, they can serve its old compiled code.
# Tests compile afresh; the cache of generated code, keyed by its text, stays on.
torch._inductor.config.fx_graph_cache = False
torch._functorch.config.enable_autograd_cache = False


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles afresh: compiles of one shared frame (torch.ops.<package>.<op>) across many
    tests and ops would add up past Dynamo's recompile limit."""
    torch._dynamo.reset()
    torch.manual_seed(0)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU; skipped without one or without CuPy")
