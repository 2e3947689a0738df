"""fir_filter: a learnable 1-D filter along x's last dim, "same" size, zeros beyond the edges."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op


def fir_filter_kernel(backend: ArrayBackend, x, taps):
    """y[..., n] = sum_k taps[k] x[..., n + k - K // 2]: a correlation, as torch's conv1d computes."""
    return backend.ndimage.correlate1d(x, taps, axis=-1, mode="constant")


def fir_filter_backward_kernel(backend: ArrayBackend, grad, x, taps):
    """A correlation's adjoint in x is the convolution; in the taps, the correlation of x with the gradient."""
    return _filter_x(backend, grad, taps), _filter_taps(backend, grad, x, taps.shape[0])


def fir_filter_jvp_kernel(backend: ArrayBackend, x_tangent, taps_tangent, x, taps):
    return fir_filter_kernel(backend, x_tangent, taps) + fir_filter_kernel(backend, x, taps_tangent)


def fir_filter_curvature_kernel(backend: ArrayBackend, grad, x_direction, taps_direction, x, taps):
    """Bilinear: the gradient in x moves with the taps, the gradient in the taps with x."""
    return _filter_x(backend, grad, taps_direction), _filter_taps(backend, grad, x_direction, taps.shape[0])


def _filter_x(backend, grad, taps):
    return backend.ndimage.convolve1d(grad, taps, axis=-1, mode="constant")


def _filter_taps(backend, grad, x, size):
    """sum over n (and the batch) of grad[..., n] x[..., n + k - size // 2], for each k."""
    xp, n = backend.xp, x.shape[-1]
    padded = xp.pad(x, [(0, 0)] * (x.ndim - 1) + [(size // 2, size - 1 - size // 2)])
    return xp.stack([(grad * padded[..., k : k + n]).sum() for k in range(size)])


def _check(x, taps):
    if x.dim() < 1:
        raise ValueError("fir_filter: x must have shape (..., N), got shape ()")
    if taps.dim() != 1 or taps.shape[0] < 1:
        raise ValueError(f"fir_filter: taps must have shape (K,) with K >= 1, got shape {tuple(taps.shape)}")


fir_filter_declared = declare_op(
    f"{__package__}::fir_filter",
    "(Tensor x, Tensor taps) -> Tensor",
    forward=fir_filter_kernel,
    backward=fir_filter_backward_kernel,
    jvp=fir_filter_jvp_kernel,
    curvature=fir_filter_curvature_kernel,
    parameters=("taps",),
    batched=True,
    third_derivatives_are_zero=True,
    check=_check,
    fake=lambda x, taps: x.new_empty(x.shape),
)


@fir_filter_declared.public
def fir_filter(x: Tensor, taps: Tensor) -> Tensor:
    """x (..., N) filtered along its last dim by taps (K,): y[..., n] = sum_k taps[k] x[..., n + k - K // 2]."""
    return fir_filter_declared(x, taps)


class FirFilter(nn.Module):
    """`fir_filter` with learnable taps, which start as the identity."""

    def __init__(self, size: int, *, device=None, dtype=None):
        super().__init__()
        self.taps = nn.Parameter(torch.empty(size, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.taps)
        with torch.no_grad():
            self.taps[len(self.taps) // 2] = 1

    def forward(self, x: Tensor) -> Tensor:
        return fir_filter(x, self.taps)
