"""Every starter's module trains sharded on two processes (gloo, CPU) as a copy of it computed natively.

With one process, FSDP1 keeps whole parameters (NO_SHARD) and never frees them, so only two
processes show it; each op's own suite trains under DDP and FSDP on one. Both processes train
on the same batch, so the averaged gradients, and the losses, are those of one process.
"""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch_scipy_op.testing._helpers import SHARDINGS, assert_trains_like_native

from reference import BadFFT, MinimalOp, MyOp, ScipyConv2d


def native_conv2d(module, x):
    out = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), module.weight[None, None]).reshape(x.shape[0], x.shape[1] - 2, -1)
    return out + module.bias


CASES = {
    "bad_fft": (BadFFT, lambda module, x: torch.fft.rfft2(x).abs()),
    "minimal_op": (MinimalOp, lambda module, x: torch.special.erf(x)),
    "my_op": (lambda: MyOp(8, frequency=0.9), lambda module, x: module.weight * torch.sin(module.frequency * x)),
    "scipy_conv2d": (lambda: ScipyConv2d(3, 3), native_conv2d),
}


def _train_every_case(rank: int, store_path: str) -> None:
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        for make_module, native_forward in CASES.values():
            for sharding in ("fsdp1", "fsdp2"):
                torch.manual_seed(0)
                model = torch.nn.Sequential(torch.nn.Linear(8, 8), make_module())
                assert_trains_like_native(model, native_forward, torch.randn(4, 6, 8), sharding)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="this torch has no torch.distributed")
def test_every_starter_trains_under_fsdp_on_two_processes():
    assert {"fsdp1", "fsdp2"} <= SHARDINGS.keys()
    with tempfile.TemporaryDirectory() as folder:
        torch.multiprocessing.spawn(_train_every_case, args=(os.path.join(folder, "store"),), nprocs=2)
