"""gammainc: the regularized lower incomplete gamma function P(a, x), which has no derivative in a (nor has
native torch's)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op


def gammainc_kernel(backend: ArrayBackend, a, x):
    return backend.special.gammainc(a, x)


def _density(backend: ArrayBackend, a, x):
    """dP/dx = x^(a-1) e^(-x) / Gamma(a)."""
    xp = backend.xp
    return xp.exp((a - 1) * xp.log(x) - x - backend.special.gammaln(a))


def gammainc_backward_kernel(backend: ArrayBackend, grad, a, x):
    return None, grad * _density(backend, a, x)  # None: a has no gradient


def gammainc_jvp_kernel(backend: ArrayBackend, x_tangent, a, x):
    return _density(backend, a, x) * x_tangent


def gammainc_curvature_kernel(backend: ArrayBackend, grad, x_direction, a, x):
    return None, grad * _density(backend, a, x) * ((a - 1) / x - 1) * x_direction


gammainc_declared = declare_op(
    f"{__package__}::gammainc",
    "(Tensor a, Tensor x) -> Tensor",
    forward=gammainc_kernel,
    backward=gammainc_backward_kernel,
    jvp=gammainc_jvp_kernel,
    curvature=gammainc_curvature_kernel,
    nondifferentiable=("a",),
    batched=True,
)


@gammainc_declared.public
def gammainc(a: Tensor, x: Tensor) -> Tensor:
    """P(a, x) for positive float tensors a and x that broadcast; differentiable in x alone."""
    return gammainc_declared(a, x)


class GammaInc(nn.Module):
    """P(a, x) with a fixed shape parameter `a`, a buffer that `reset_parameters` fills."""

    def __init__(self, a: float):
        super().__init__()
        self.shape_parameter = float(a)
        self.register_buffer("a", torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Also what deferred initialisation calls, after a module made on the meta device is moved."""
        self.a.fill_(self.shape_parameter)

    def forward(self, x: Tensor) -> Tensor:
        return gammainc(self.a, x)
