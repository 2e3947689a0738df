"""Fixtures: every test that takes `device` runs on the CPU, and on CUDA where it can."""

import pytest
import torch
import torch._dynamo
import torch._functorch.config
import torch._inductor.config

from tests.helpers import needs_cuda, needs_cupy

# torch.compile's on-disk caches key a graph by the ops' names, not their schemas or fakes
# (pytorch/pytorch#187319): after an op changes, they can serve its old compiled code.
# Tests compile afresh; the cache of generated code, keyed by its text, stays on.
torch._inductor.config.fx_graph_cache = False
torch._functorch.config.enable_autograd_cache = False


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, needs_cuda, needs_cupy])])
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles afresh: compiles of one shared frame (torch.ops.<package>.<op>) across
    many tests and ops would add up past Dynamo's recompile limit."""
    torch._dynamo.reset()
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def process_group():
    """A one-process gloo group on the CPU, as DDP and FSDP need."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("this torch has no torch.distributed")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU; skipped without one or without CuPy")
