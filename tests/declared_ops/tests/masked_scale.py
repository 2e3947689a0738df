"""masked_scale: an optional tensor input (Tensor? mask=None), which has a gradient when it is given."""

import torch
from torch_scipy_op.testing import OpContract, assert_matches, randn

from own_ops import MaskedScale, masked_scale


def native(x, scale, mask=None):
    return scale * x if mask is None else scale * x * mask


class TestContract(OpContract):
    op = staticmethod(masked_scale)
    native = staticmethod(native)
    samples = (
        {"x": (3, 5), "scale": (5,), "mask": (3, 5)},
        {"x": (3, 5), "scale": (5,)},
        {"x": (2, 3, 4), "scale": (), "mask": (3, 1)},
        {"x": (4, 1), "scale": (4, 1), "mask": (6,)},
        {"x": (0, 3), "scale": (3,)},
    )
    bad_inputs = (
        ({"x": (3, 4), "scale": (5,)}, ValueError, r"scale must broadcast with x's shape \(3, 4\), got shape \(5,\)"),
        (
            {"x": (3, 4), "scale": (4,), "mask": (3,)},
            ValueError,
            r"mask must broadcast with x and scale's shape \(3, 4\), got shape \(3,\)",
        ),
    )
    benchmark_samples = ({"x": (256, 1024), "scale": (1024,), "mask": (256, 1024)},)

    @staticmethod
    def module():
        return MaskedScale(8), (4, 6, 8), lambda module, x: native(x, module.scale)


def test_a_mask_that_needs_no_gradient(device):
    x, scale = randn(3, 5, device=device), randn(5, device=device)
    mask = (torch.rand(3, 5, device=device) > 0.5).double()
    assert_matches(masked_scale, native, x, scale, mask)
