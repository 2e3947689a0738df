"""fir_filter: a learnable filter (a parameter, which does not broadcast with x), bilinear in x and the taps."""

import pytest
import torch
import torch.nn.functional as F
from torch_scipy_op.testing import OpContract

from own_ops import FirFilter, fir_filter


def native(x, taps):
    """conv1d, which correlates, on x padded as the op pads it."""
    size = taps.shape[0]
    padded = F.pad(x.reshape(-1, 1, x.shape[-1]), (size // 2, size - 1 - size // 2))
    return F.conv1d(padded, taps.reshape(1, 1, size)).reshape(x.shape)


class TestContract(OpContract):
    op = staticmethod(fir_filter)
    native = staticmethod(native)
    samples = (
        {"x": (2, 3, 8), "taps": (4,)},
        {"x": (9,), "taps": (3,)},
        {"x": (4, 2), "taps": (5,)},
        {"x": (0, 6), "taps": (1,)},
    )
    bad_inputs = (
        ({"x": (3, 8), "taps": (2, 3)}, ValueError, r"taps must have shape \(K,\) with K >= 1, got shape \(2, 3\)"),
        ({"x": (3, 8), "taps": (0,)}, ValueError, r"taps must have shape \(K,\) with K >= 1, got shape \(0,\)"),
        ({"x": (), "taps": (3,)}, ValueError, r"x must have shape \(..., N\), got shape \(\)"),
    )
    benchmark_samples = ({"x": (16, 4096), "taps": (9,)},)

    @staticmethod
    def module():
        return FirFilter(3), (4, 6, 8), lambda module, x: native(x, module.taps)


def test_bad_taps_under_vmap_name_the_per_sample_shape():
    with pytest.raises(ValueError, match=r"^fir_filter: taps must have shape \(K,\) with K >= 1, got shape \(2, 3\)"):
        torch.func.vmap(fir_filter, in_dims=(None, 0))(torch.ones(8), torch.ones(4, 2, 3))
