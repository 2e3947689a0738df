"""normalize: x divided by the sum of all its elements. It sums over its whole input, so it declares no batch."""

from __future__ import annotations

from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op


def normalize_kernel(backend: ArrayBackend, x):
    return x / x.sum()


def normalize_backward_kernel(backend: ArrayBackend, grad, x):
    total = x.sum()
    return (grad - (grad * x).sum() / total) / total


normalize_declared = declare_op(
    f"{__package__}::normalize",
    "(Tensor x) -> Tensor",
    forward=normalize_kernel,
    backward=normalize_backward_kernel,
)


@normalize_declared.public
def normalize(x: Tensor) -> Tensor:
    """x / x.sum(), the sum over every element: under torch.func.vmap, over each sample's."""
    return normalize_declared(x)


class Normalize(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return normalize(x)
