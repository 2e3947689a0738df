"""mean_and_var: two outputs, each with a gradient of its own (None where unused), and forward mode."""

import pytest
import torch
from torch_scipy_op.testing import OpContract, randn

from own_ops import MeanAndVar, mean_and_var


def native(x):
    mean = x.mean(-1)
    return mean, (x - mean[..., None]).pow(2).mean(-1)


class TestContract(OpContract):
    op = staticmethod(mean_and_var)
    native = staticmethod(native)
    samples = ({"x": (3, 5)}, {"x": (7,)}, {"x": (2, 0, 4)}, {"x": (4, 1)})
    bad_inputs = (
        ({"x": ()}, ValueError, r"x must have shape \(..., N\) with N >= 1, got shape \(\)"),
        ({"x": (3, 0)}, ValueError, r"x must have shape \(..., N\) with N >= 1, got shape \(3, 0\)"),
        ({"x": lambda dtype, device: torch.ones(3, dtype=torch.complex64)}, TypeError, "x must be float16, bfloat16"),
    )
    benchmark_samples = ({"x": (256, 4096)},)

    @staticmethod
    def module():
        return MeanAndVar(), (4, 6, 8), lambda module, x: native(x)


@pytest.mark.parametrize("used", [0, 1], ids=["mean", "var"])
def test_gradient_of_one_output_alone(used, device):
    """The unused output's gradient reaches the op as None."""
    x = randn(3, 6, device=device)
    grad = torch.randn(3, dtype=torch.float64, device=device)
    ours = torch.autograd.grad(mean_and_var(x)[used], x, grad)
    torch.testing.assert_close(ours, torch.autograd.grad(native(x)[used], x, grad))
