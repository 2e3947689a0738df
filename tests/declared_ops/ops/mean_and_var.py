"""mean_and_var: the mean and the (population) variance of x over its last dim, two outputs."""

from __future__ import annotations

from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op


def mean_and_var_kernel(backend: ArrayBackend, x):
    return x.mean(axis=-1), x.var(axis=-1)


def mean_and_var_backward_kernel(backend: ArrayBackend, grad_mean, grad_var, x):
    n = x.shape[-1]
    centred = x - x.mean(axis=-1, keepdims=True)
    return (grad_mean[..., None] + 2 * grad_var[..., None] * centred) / n


def mean_and_var_jvp_kernel(backend: ArrayBackend, x_tangent, x):
    centred = x - x.mean(axis=-1, keepdims=True)
    return x_tangent.mean(axis=-1), 2 * (centred * x_tangent).mean(axis=-1)


def _check(x):
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"mean_and_var: x must have shape (..., N) with N >= 1, got shape {tuple(x.shape)}")


def _fake(x):
    return x.new_empty(x.shape[:-1]), x.new_empty(x.shape[:-1])


mean_and_var_declared = declare_op(
    f"{__package__}::mean_and_var",
    "(Tensor x) -> (Tensor mean, Tensor var)",
    forward=mean_and_var_kernel,
    backward=mean_and_var_backward_kernel,
    jvp=mean_and_var_jvp_kernel,
    batched=True,
    check=_check,
    fake=_fake,
)


@mean_and_var_declared.public
def mean_and_var(x: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and the variance (without Bessel's correction) of x over its last dim."""
    return mean_and_var_declared(x)


class MeanAndVar(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return mean_and_var(x)
