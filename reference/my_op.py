"""MyOp: a blank op to fill with your own NumPy/SciPy math.

It shows the general case: a data tensor `x`, a learnable `weight` that broadcasts
over x's batch, and a plain-float hyperparameter `frequency`. Its placeholder math,

    y = weight · sin(frequency · x)

is simple enough to replace in a minute, and every test passes before you change
anything. To make it yours:

1. Replace the array kernels below. `forward` and `backward` are what training
   needs; `jvp` (forward mode) and `curvature` (second derivatives) are optional:
   if your op will not need them, make them raise NotImplementedError and delete
   their tests.
2. Change the ops' schemas if your inputs differ, and give an op a `fake=` if an
   output's shape is not the broadcast shape of its tensor inputs.
3. Replace `native` in the tests with a torch version of your op, if one exists.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._boundary import (
    FLOAT_DTYPES,
    ArrayBackend,
    check_float,
    check_like,
    check_tensor,
    float_argument,
    function_applier,
    kernel_op,
    public_op,
    register_public_op,
)

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
#    `backend.xp` is numpy or cupy; `backend.ndimage`, `backend.special`, ... are
#    scipy's or cupyx.scipy's. Leading dims are batch dims: broadcast over them.
#    Return gradients in the broadcast shape; the plumbing sums them to each input's.
# ----------------------------------------------------------------------------


def my_op_kernel(backend: ArrayBackend, x, weight, frequency):
    """The forward. Placeholder: weight * sin(frequency * x)."""
    return weight * backend.xp.sin(frequency * x)


def my_op_backward_kernel(backend: ArrayBackend, grad, x, weight, frequency):
    """Reverse mode: the gradients for x and for weight, given the output's gradient."""
    xp = backend.xp
    return grad * weight * frequency * xp.cos(frequency * x), grad * xp.sin(frequency * x)


def my_op_jvp_kernel(backend: ArrayBackend, x_tangent, weight_tangent, x, weight, frequency):
    """Forward mode: how the output moves when x and weight move by their tangents."""
    xp = backend.xp
    return weight * frequency * xp.cos(frequency * x) * x_tangent + xp.sin(frequency * x) * weight_tangent


def my_op_curvature_kernel(backend: ArrayBackend, grad, x_direction, weight_direction, x, weight, frequency):
    """Second order: how the backward's two gradients move when x and weight move in a direction."""
    xp = backend.xp
    cos, sin = xp.cos(frequency * x), xp.sin(frequency * x)
    grad_x = grad * frequency * (cos * weight_direction - weight * frequency * sin * x_direction)
    grad_weight = grad * frequency * cos * x_direction
    return grad_x, grad_weight


# ----------------------------------------------------------------------------
# 2. PyTorch plumbing: a custom op per kernel (with its fake, vmap rule and
#    autocast, from `kernel_op`), and autograd.Functions for the derivatives.
# ----------------------------------------------------------------------------


def _check(x, weight, frequency):
    """The op's rules, from its implementation and its fake, so that every path refuses alike."""
    check_float("my_op", "x", x)
    check_like("my_op", "weight", weight, "x", x)
    try:
        torch.broadcast_shapes(x.shape, weight.shape)
    except RuntimeError:
        raise ValueError(
            f"my_op: weight must broadcast with x's shape {tuple(x.shape)}, got shape {tuple(weight.shape)}"
        ) from None


_NAME = f"{__package__}::my_op"
my_op_forward_op = kernel_op(
    f"{_NAME}_forward", "(Tensor x, Tensor weight, float frequency) -> Tensor", my_op_kernel, check=_check
)
my_op_backward_op = kernel_op(
    f"{_NAME}_backward",
    "(Tensor grad, Tensor x, Tensor weight, float frequency) -> (Tensor, Tensor)",
    my_op_backward_kernel,
)
my_op_jvp_op = kernel_op(
    f"{_NAME}_jvp",
    "(Tensor x_tangent, Tensor weight_tangent, Tensor x, Tensor weight, float frequency) -> Tensor",
    my_op_jvp_kernel,
)
my_op_curvature_op = kernel_op(
    f"{_NAME}_curvature",
    "(Tensor grad, Tensor x_direction, Tensor weight_direction, Tensor x, Tensor weight, float frequency)"
    " -> (Tensor, Tensor)",
    my_op_curvature_kernel,
)


def _sum_to(gradients, *inputs):
    """Each gradient summed to its input's shape: weight's over the batch it broadcast over.

    This runs in torch, so under vmap (per-sample gradients) it sums within each sample.
    """
    return tuple(g.sum_to_size(t.shape) for g, t in zip(gradients, inputs, strict=True))


def _tangents(ctx_tangents, *inputs):
    """Forward-mode tangents, with zeros for inputs that have none."""
    return [torch.zeros_like(t) if d is None else d.to(t.dtype) for d, t in zip(ctx_tangents, inputs, strict=True)]


# Each derivative is an autograd.Function of its own, so that differentiating it again
# either works (second derivatives, forward or reverse) or fails with a clear error.
class MyOpFunction(torch.autograd.Function):
    """my_op with its derivatives for x and weight: reverse, forward (jvp) and second order."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, frequency):
        return my_op_forward_op(x, weight, frequency)

    @staticmethod
    def setup_context(ctx, inputs, output):
        # Under autocast the op ran on its inputs in float32; elsewhere these are the inputs themselves.
        x, weight, ctx.frequency = inputs
        tensors = x.to(output.dtype), weight.to(output.dtype)
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        # Only double backward and torch.func need the backward's own Function; it costs ~25 µs.
        backward = _MyOpBackward.apply if torch.is_grad_enabled() else my_op_backward_op
        return *_sum_to(backward(grad, x, weight, ctx.frequency), x, weight), None

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent, _):
        x, weight = ctx.saved_tensors
        return _MyOpJvp.apply(*_tangents((x_tangent, weight_tangent), x, weight), x, weight, ctx.frequency)


class _MyOpBackward(torch.autograd.Function):
    """(grad_x, grad_weight) = backward(grad, x, weight), linear in grad."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x, weight, frequency):
        return my_op_backward_op(grad, x, weight, frequency)

    @staticmethod
    def setup_context(ctx, inputs, output):
        *tensors, ctx.frequency = inputs
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)

    @staticmethod
    def backward(ctx, x_cotangent, weight_cotangent):
        grad, x, weight = ctx.saved_tensors
        directions = _tangents((x_cotangent, weight_cotangent), grad, grad)
        grad_of_grad = _MyOpJvp.apply(*directions, x, weight, ctx.frequency)
        curvature = _MyOpCurvature.apply(grad, *directions, x, weight, ctx.frequency)
        return grad_of_grad, *_sum_to(curvature, x, weight), None

    @staticmethod
    def jvp(ctx, grad_tangent, x_tangent, weight_tangent, _):
        grad, x, weight = ctx.saved_tensors
        grad_tangent, x_tangent, weight_tangent = _tangents((grad_tangent, x_tangent, weight_tangent), grad, x, weight)
        by_grad = _MyOpBackward.apply(grad_tangent, x, weight, ctx.frequency)
        by_inputs = _MyOpCurvature.apply(grad, x_tangent, weight_tangent, x, weight, ctx.frequency)
        return tuple(a + b for a, b in zip(by_grad, by_inputs, strict=True))


class _MyOpJvp(torch.autograd.Function):
    """tangent_y = jvp(x_tangent, weight_tangent, x, weight), linear in the tangents."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x_tangent, weight_tangent, x, weight, frequency):
        return my_op_jvp_op(x_tangent, weight_tangent, x, weight, frequency)

    @staticmethod
    def setup_context(ctx, inputs, output):
        *tensors, ctx.frequency = inputs
        ctx.save_for_backward(*tensors)

    @staticmethod
    def backward(ctx, grad):
        x_tangent, weight_tangent, x, weight = ctx.saved_tensors
        grads_of_tangents = _MyOpBackward.apply(grad, x, weight, ctx.frequency)
        curvature = _MyOpCurvature.apply(grad, x_tangent, weight_tangent, x, weight, ctx.frequency)
        tensors = (x_tangent, weight_tangent, x, weight)
        return *_sum_to((*grads_of_tangents, *curvature), *tensors), None

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError("my_op: forward-over-forward derivatives are not supported; use reverse mode inside")


class _MyOpCurvature(torch.autograd.Function):
    """The second-derivative term. Differentiating it again would be a third derivative."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x_direction, weight_direction, x, weight, frequency):
        return my_op_curvature_op(grad, x_direction, weight_direction, x, weight, frequency)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("my_op: third derivatives are not supported; first and second derivatives are")

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError("my_op: third derivatives are not supported; first and second derivatives are")


_apply = function_applier(MyOpFunction)
register_public_op(__package__, "my_op", "(Tensor x, Tensor weight, float frequency=1.0) -> Tensor", _apply)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


@public_op
def my_op(x: Tensor, weight: Tensor, frequency: float = 1.0) -> Tensor:
    """Your op. Placeholder: weight * sin(frequency * x), for a float tensor x of any shape.

    `weight` broadcasts with x, usually over its batch; `frequency` is a plain float.
    Returns a tensor of the broadcast shape (x's, for a weight that fits in it) and
    x's dtype. float16 and bfloat16 are computed in float32; under autocast the
    result is float32.
    """
    check_tensor("my_op", "x", x)
    check_tensor("my_op", "weight", weight)
    return _apply(x, weight, float_argument("my_op", "frequency", frequency))


class MyOp(nn.Module):
    """`my_op` with a learnable weight of shape (features,), which scales x's last dim."""

    def __init__(self, features: int, frequency: float = 1.0, *, device=None, dtype=None):
        super().__init__()
        if not isinstance(features, int) or isinstance(features, bool):
            raise TypeError(f"MyOp: features must be an int, got {type(features).__name__}")
        if features < 1:
            raise ValueError(f"MyOp: features must be positive, got {features}")
        if dtype is not None and dtype not in FLOAT_DTYPES:
            raise TypeError(f"MyOp: dtype must be float16, bfloat16, float32 or float64, got {dtype}")
        self.frequency = float_argument("MyOp", "frequency", frequency)
        self.weight = nn.Parameter(torch.ones(features, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return my_op(x, self.weight, self.frequency)

    def extra_repr(self) -> str:
        return f"features={self.weight.shape[0]}, frequency={self.frequency}"
