"""local_max: int and int[] hyperparameters, a saved index, and reverse mode only (no jvp, no curvature)."""

import torch
import torch.nn.functional as F
from torch_scipy_op.testing import OpContract

from own_ops import LocalMax, local_max


def native(x, size, axes=(-1,)):
    """Box maxima by unfold, one axis at a time, the box cut at the edges as the op cuts it."""
    for axis in axes:
        moved = x.movedim(axis, -1)
        padded = F.pad(moved, (size // 2, size - 1 - size // 2), value=-torch.inf)
        x = padded.unfold(-1, size, 1).amax(-1).movedim(-1, axis)
    return x


def distinct(*shape):
    """Inputs without ties, and no two elements closer than gradcheck's step."""
    return lambda dtype, device: torch.randperm(torch.Size(shape).numel(), dtype=dtype, device=device).reshape(shape)


class TestContract(OpContract):
    op = staticmethod(local_max)
    native = staticmethod(native)
    samples = (
        {"x": distinct(4, 9), "size": 4},
        {"x": distinct(10), "size": 3, "axes": [-1]},
        {"x": distinct(5, 6), "size": 3, "axes": [0, 1]},
        {"x": distinct(2, 5, 6), "size": 2, "axes": [1]},
        {"x": distinct(3, 4), "size": 1, "axes": [0]},
    )
    bad_inputs = (
        ({"x": (3, 4), "size": 0}, ValueError, "size must be at least 1, got 0"),
        (
            {"x": (3, 4), "size": 3, "axes": [0, 2]},
            ValueError,
            r"axes\[1\] = 2 is out of range for x of shape \(3, 4\)",
        ),
        ({"x": (3, 4), "size": 3, "axes": 1}, TypeError, "axes must be a list or tuple of ints, got int"),
    )
    benchmark_samples = ({"x": (16, 256, 256), "size": 5, "axes": [-2, -1]},)

    @staticmethod
    def module():
        return LocalMax(3), (4, 6, 8), lambda module, x: native(x, 3)
