"""DTensor inputs on a two-process gloo mesh: batched ops run per shard with native's placements and gradients.

Each case runs the op and a native torch version of it on the same DTensors, sharded on the batch
(Shard(0)) or replicated, and compares the outputs, their placements, and the gradients and their
placements (a replicated weight's is a partial sum over sharded data, as native's; data's is placed as the
data). What the ops cannot take is refused with what to do.
"""

import gc
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch_scipy_op import declare_op

from reference.bad_fft import bad_fft
from reference.my_op import my_op
from reference.scipy_conv2d import scipy_conv2d

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available(), reason="this torch has no torch.distributed"),
]

# A sum over the whole input: not batched, so it refuses DTensors.
TOTAL = declare_op(
    "dtensor_test::total",
    "(Tensor x) -> Tensor",
    forward=lambda backend, x: backend.xp.asarray(x.sum(), dtype=x.dtype),
    backward=lambda backend, grad, x: backend.xp.broadcast_to(grad, x.shape),
    fake=lambda x: x.new_empty(()),
)

# Two outputs of fewer dims than the input: a mean and a variance over the last dim.
MEAN_AND_VAR = declare_op(
    "dtensor_test::mean_and_var",
    "(Tensor x) -> (Tensor mean, Tensor var)",
    forward=lambda backend, x: (x.mean(-1), x.var(-1)),
    backward=lambda backend, grad_mean, grad_var, x, mean: (
        grad_mean[..., None] / x.shape[-1] + grad_var[..., None] * 2 * (x - mean[..., None]) / x.shape[-1]
    ),
    batched=True,
    fake=lambda x: (x.new_empty(x.shape[:-1]), x.new_empty(x.shape[:-1])),
)


def conv2d(x, weight, bias):
    """scipy_conv2d natively, for x of shape (B, H, W)."""
    return F.conv2d(x.unsqueeze(1), weight[None, None]).squeeze(1) + bias


# op, native, each argument's (shape or value, whether it is data that is sharded). Odd batches shard unevenly.
CASES = {
    "bad_fft": (bad_fft, lambda x: torch.fft.rfft2(x).abs(), [((5, 6, 8), True)]),
    "my_op": (my_op, lambda x, w, f: w * torch.sin(f * x), [((4, 6), True), ((6,), False), (0.9, False)]),
    "scipy_conv2d": (scipy_conv2d, conv2d, [((7, 7, 6), True), ((3, 3), False), ((1,), False)]),
    "mean_and_var": (MEAN_AND_VAR, lambda x: (x.mean(-1), x.var(-1, correction=0)), [((5, 3, 6), True)]),
}


def as_tuple(outputs):
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _each_case(rank, store):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2)
    mesh = init_device_mesh("cpu", (2,))
    try:
        for name, (op, native, specs) in CASES.items():
            for shard in (Shard(0), Replicate()):
                torch.manual_seed(0)
                ours, theirs = [], []
                for spec, is_data in specs:
                    if not isinstance(spec, tuple):
                        ours.append(spec), theirs.append(spec)
                        continue
                    placement = shard if is_data else Replicate()
                    t = distribute_tensor(torch.randn(spec, dtype=torch.float64), mesh, [placement])
                    ours.append(t.detach().requires_grad_()), theirs.append(t.detach().requires_grad_())
                outputs = op(*ours)
                try:
                    expected = native(*theirs)
                except (NotImplementedError, RuntimeError):  # DTensor's rules for FFTs and conv2d came after 2.9
                    assert torch.__version__ < (2, 13), name
                    continue
                outputs, expected = as_tuple(outputs), as_tuple(expected)
                for y, e in zip(outputs, expected, strict=True):
                    assert y.placements == e.placements, (name, shard, y.placements)
                    torch.testing.assert_close(y.full_tensor(), e.full_tensor())
                sum(y.square().sum() for y in outputs).backward()
                sum(e.square().sum() for e in expected).backward()
                for a, b, (_, is_data) in zip(ours, theirs, specs, strict=True):
                    if isinstance(a, torch.Tensor):
                        # Data's gradient is placed as the data, with no communication; native's FFTs, which
                        # DTensor has no rule for, replicate theirs.
                        expected_placements = a.placements if is_data else b.grad.placements
                        assert a.grad.placements == expected_placements, (name, shard, a.grad.placements)
                        torch.testing.assert_close(a.grad.full_tensor(), b.grad.full_tensor())
        _refusals(mesh, Shard, Replicate, distribute_tensor)
        # The refusals' tracebacks hold DTensors in reference cycles: freed now, not after gloo is torn down,
        # where their destructors abort the process.
        gc.collect()
    finally:
        dist.destroy_process_group()


def _refusals(mesh, Shard, Replicate, distribute_tensor):  # noqa: N803 (the classes, imported in the process)
    def sharded(shape, placement):
        return distribute_tensor(torch.randn(shape), mesh, [placement])

    refused = [
        (lambda: bad_fft(sharded((6, 8), Shard(0))), r"x of shape \(6, 8\) is sharded on dim 0, which is not a batch"),
        (lambda: bad_fft(sharded((4, 6, 8), Shard(1))), r"is sharded on dim 1, which is not a batch dim"),
        (lambda: TOTAL(sharded((4, 6), Shard(0))), "it is not declared batched=True"),
        (lambda: my_op(sharded((4, 6), Shard(0)), torch.randn(6)), "weight is a torch.Tensor among DTensors"),
        (lambda: my_op(sharded((4, 6), Shard(0)), sharded((4, 6), Replicate())), "weight is replicated with the dim"),
        (lambda: scipy_conv2d(sharded((4, 7, 6), Shard(0)), sharded((4, 3), Shard(0)), sharded((1,), Replicate())),
         r"its parameter weight is S\(0\); replicate parameters"),
    ]  # fmt: skip
    for call, message in refused:
        with pytest.raises(ValueError, match=message) as error:
            call()
        assert "full_tensor()" in str(error.value)
        assert "local_map" in str(error.value)


def test_batched_ops_take_dtensors_as_native_ops_do_on_two_processes():
    with tempfile.TemporaryDirectory() as folder:
        torch.multiprocessing.spawn(_each_case, args=(os.path.join(folder, "store"),), nprocs=2)
