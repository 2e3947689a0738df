"""local_max: the largest element of each box of `size` along `axes` (a max filter), its gradient to that element."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op


def local_max_kernel(backend: ArrayBackend, x, size, axes):
    """Each element's box max, and the flat index in x of the element it selected (the first, on ties).

    The box is centred as scipy.ndimage.maximum_filter centres it, and cut at the edges.
    One axis at a time: the max of a box is the max, along one axis, of the other axes' maxima.
    """
    xp = backend.xp
    values, index = x, xp.arange(x.size).reshape(x.shape)
    for axis in axes:
        value_windows, index_windows = _windows(xp, values, size, axis, -xp.inf), _windows(xp, index, size, axis, 0)
        selected = xp.expand_dims(value_windows.argmax(axis=-1), -1)
        values = xp.take_along_axis(value_windows, selected, axis=-1)[..., 0]
        index = xp.take_along_axis(index_windows, selected, axis=-1)[..., 0]
    return values, index


def local_max_backward_kernel(backend: ArrayBackend, grad, index):
    """Each output's gradient goes to the element it selected."""
    gradient = backend.xp.bincount(index.ravel(), weights=grad.ravel(), minlength=index.size)
    return gradient.reshape(index.shape)


def _windows(xp, a, size, axis, fill):
    """windows[..., k] = a shifted by k - size // 2 along `axis`, `fill` beyond the edges."""
    axis = axis % a.ndim
    a = xp.moveaxis(a, axis, -1)
    before, n = size // 2, a.shape[-1]
    padded = xp.pad(a, [(0, 0)] * (a.ndim - 1) + [(before, size - 1 - before)], constant_values=fill)
    return xp.moveaxis(xp.stack([padded[..., k : k + n] for k in range(size)], axis=-1), -2, axis)


def _check(x, size, axes):
    if size < 1:
        raise ValueError(f"local_max: size must be at least 1, got {size}")
    for i, axis in enumerate(axes):
        if not -x.dim() <= axis < x.dim():
            raise ValueError(f"local_max: axes[{i}] = {axis} is out of range for x of shape {tuple(x.shape)}")


local_max_declared = declare_op(
    f"{__package__}::local_max",
    "(Tensor x, int size, int[] axes=[-1]) -> Tensor",
    forward=local_max_kernel,
    backward=local_max_backward_kernel,  # and no jvp or curvature: first derivatives, in reverse mode only
    saved=("index",),
    check=_check,
    fake=lambda x, size, axes: (x.new_empty(x.shape), x.new_empty(x.shape, dtype=torch.int64)),
)


@local_max_declared.public
def local_max(x: Tensor, size: int, axes: tuple[int, ...] = (-1,)) -> Tensor:
    """The max of each box of `size` along `axes`, centred on each element of x (cut at the edges)."""
    return local_max_declared(x, size, axes)


class LocalMax(nn.Module):
    def __init__(self, size: int, axes: tuple[int, ...] = (-1,)):
        super().__init__()
        self.size, self.axes = size, list(axes)

    def forward(self, x: Tensor) -> Tensor:
        return local_max(x, self.size, self.axes)
