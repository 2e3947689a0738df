"""normalize: x / x.sum() over the whole input, so it declares no batch: vmap runs it once per sample."""

import torch
from torch_scipy_op.testing import OpContract

from own_ops import Normalize, normalize


def native(x):
    return x / x.sum()


def positive(*shape):
    """Inputs whose sum is far from 0."""
    return lambda dtype, device: torch.rand(shape, dtype=dtype, device=device) + 0.5


class TestContract(OpContract):
    op = staticmethod(normalize)
    native = staticmethod(native)
    samples = ({"x": positive(3, 4, 5)}, {"x": positive()}, {"x": positive(7)})
    benchmark_samples = ({"x": positive(256, 256)},)

    @staticmethod
    def module():
        return Normalize(), (4, 6, 8), lambda module, x: native(x)


def test_vmap_normalizes_each_sample(device):
    x = positive(5, 3, 4)(torch.float64, device)
    batched = torch.func.vmap(normalize)(x)
    torch.testing.assert_close(batched, torch.stack([normalize(sample) for sample in x]))
    torch.testing.assert_close(batched.sum((1, 2)), torch.ones(5, dtype=torch.float64, device=device))
