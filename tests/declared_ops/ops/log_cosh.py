"""log_cosh: log(cosh(x)), elementwise, with every derivative kernel."""

from __future__ import annotations

from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op

LOG_2 = 0.6931471805599453  # a Python float: a NumPy float64 scalar would promote float32


def log_cosh_kernel(backend: ArrayBackend, x):
    """log(cosh(x)) = log(e^x + e^-x) - log(2), which does not overflow."""
    return backend.xp.logaddexp(x, -x) - LOG_2


def log_cosh_backward_kernel(backend: ArrayBackend, grad, x):
    return grad * backend.xp.tanh(x)


def log_cosh_jvp_kernel(backend: ArrayBackend, x_tangent, x):
    return backend.xp.tanh(x) * x_tangent


def log_cosh_curvature_kernel(backend: ArrayBackend, grad, x_direction, x):
    return grad * (1 - backend.xp.tanh(x) ** 2) * x_direction


log_cosh_declared = declare_op(
    f"{__package__}::log_cosh",
    "(Tensor x) -> Tensor",
    forward=log_cosh_kernel,
    backward=log_cosh_backward_kernel,
    jvp=log_cosh_jvp_kernel,
    curvature=log_cosh_curvature_kernel,
    batched=True,
)


@log_cosh_declared.public
def log_cosh(x: Tensor) -> Tensor:
    """log(cosh(x)) of a float tensor of any shape."""
    return log_cosh_declared(x)


class LogCosh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return log_cosh(x)
