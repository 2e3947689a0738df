"""masked_scale: scale * x, times a mask where one is given: an optional tensor input."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op


def masked_scale_kernel(backend: ArrayBackend, x, scale, mask):
    return scale * x if mask is None else scale * x * mask


def masked_scale_backward_kernel(backend: ArrayBackend, grad, x, scale, mask):
    """The gradients of x, scale and the mask (None where there is no mask)."""
    kept = grad if mask is None else grad * mask
    return kept * scale, kept * x, None if mask is None else grad * scale * x


def masked_scale_jvp_kernel(backend: ArrayBackend, x_tangent, scale_tangent, mask_tangent, x, scale, mask):
    moved = scale * x_tangent + scale_tangent * x
    return moved if mask is None else moved * mask + scale * x * mask_tangent


masked_scale_declared = declare_op(
    f"{__package__}::masked_scale",
    "(Tensor x, Tensor scale, Tensor? mask=None) -> Tensor",
    forward=masked_scale_kernel,
    backward=masked_scale_backward_kernel,
    jvp=masked_scale_jvp_kernel,
    batched=True,
)


@masked_scale_declared.public
def masked_scale(x: Tensor, scale: Tensor, mask: Tensor | None = None) -> Tensor:
    """scale * x, times `mask` where given; scale and mask broadcast with x."""
    return masked_scale_declared(x, scale, mask)


class MaskedScale(nn.Module):
    """`masked_scale` with a learnable scale of shape (features,), over x's last dim."""

    def __init__(self, features: int, *, device=None, dtype=None):
        super().__init__()
        self.scale = nn.Parameter(torch.empty(features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.scale)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return masked_scale(x, self.scale, mask)
