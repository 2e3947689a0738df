"""MyOp: a blank op to fill with your own NumPy/SciPy math.

It comes with the simplest correct placeholder, y = sin(x) elementwise, so that
every test passes before you change anything. To make it yours:

1. Replace the forward and backward array kernels, in part 1 of my_op.py. The
   jvp (forward mode) and curvature (second derivatives) kernels are optional: if
   your op does not need them, make them raise NotImplementedError and drop
   their tests.
2. Give an op a `fake=` if its output's shape or dtype differs from its inputs'
   broadcast shape and dtype, and a `check=` for what your op refuses.
3. Replace `native` in the tests with a torch version of your op, if one exists.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._boundary import ArrayBackend, check_float, check_tensor, kernel_op, register_public_op

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
#    `backend.xp` is numpy or cupy; `backend.rfft2` and friends wrap their FFTs.
# ----------------------------------------------------------------------------


def my_op_kernel(backend: ArrayBackend, x):
    """The forward. Placeholder: sin(x)."""
    return backend.xp.sin(x)


def my_op_backward_kernel(backend: ArrayBackend, grad, x):
    """Reverse mode: the gradient with respect to x, given the output's gradient. Placeholder: grad * cos(x)."""
    return grad * backend.xp.cos(x)


def my_op_jvp_kernel(backend: ArrayBackend, tangent, x):
    """Forward mode: the output's change when x moves by `tangent`. Placeholder: tangent * cos(x).

    For an elementwise op it has the backward's formula; in general it is the transpose.
    """
    return tangent * backend.xp.cos(x)


def my_op_curvature_kernel(backend: ArrayBackend, grad, direction, x):
    """Second order: how the backward's result moves when x moves in `direction`.

    Placeholder: -grad * direction * sin(x). It is symmetric in grad's and direction's roles.
    """
    return -grad * direction * backend.xp.sin(x)


# ----------------------------------------------------------------------------
# 2. PyTorch plumbing: custom ops for the kernels, and autograd.Functions that tie
#    them together. The Functions are what torch.func (grad, jacrev, jvp) needs.
# ----------------------------------------------------------------------------


# One custom op per kernel, with its fake, vmap rule and autocast (see `kernel_op`). Each
# output has the broadcast shape of the op's tensor arguments, as elementwise ops have.
my_op_forward_op = kernel_op(
    f"{__package__}::my_op_forward", "(Tensor x) -> Tensor", my_op_kernel, check=lambda x: check_float("my_op", "x", x)
)
my_op_backward_op = kernel_op(
    f"{__package__}::my_op_backward", "(Tensor grad, Tensor x) -> Tensor", my_op_backward_kernel
)
my_op_jvp_op = kernel_op(f"{__package__}::my_op_jvp", "(Tensor tangent, Tensor x) -> Tensor", my_op_jvp_kernel)
my_op_curvature_op = kernel_op(
    f"{__package__}::my_op_curvature", "(Tensor grad, Tensor direction, Tensor x) -> Tensor", my_op_curvature_kernel
)


# Each derivative is an autograd.Function of its own, so that differentiating it again
# either works (second derivatives, forward or reverse) or fails with a clear error.
class MyOpFunction(torch.autograd.Function):
    """my_op with its derivatives: reverse, forward (jvp) and second order."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return my_op_forward_op(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        # Under autocast the op ran on x in float32; elsewhere this is x itself.
        (x,) = inputs
        ctx.save_for_backward(x.to(output.dtype))
        ctx.save_for_forward(x.to(output.dtype))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # Only double backward and torch.func need the backward's own Function; it costs ~25 µs.
        return _MyOpBackward.apply(grad, x) if torch.is_grad_enabled() else my_op_backward_op(grad, x)

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return _MyOpJvp.apply(tangent.to(x.dtype), x)


class _MyOpForCompile(MyOpFunction):
    """MyOpFunction without its jvp: Dynamo refuses a custom jvp under fullgraph (torch 2.13, 2.14)."""

    jvp = torch.autograd.Function.jvp


class _MyOpBackward(torch.autograd.Function):
    """grad_x = backward(grad, x), linear in grad."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x):
        return my_op_backward_op(grad, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, cotangent):
        grad, x = ctx.saved_tensors
        grad_of_grad = _MyOpJvp.apply(cotangent, x) if ctx.needs_input_grad[0] else None
        grad_of_x = _MyOpCurvature.apply(grad, cotangent, x) if ctx.needs_input_grad[1] else None
        return grad_of_grad, grad_of_x

    @staticmethod
    def jvp(ctx, grad_tangent, x_tangent):
        grad, x = ctx.saved_tensors
        terms = []
        if grad_tangent is not None:
            terms.append(_MyOpBackward.apply(grad_tangent, x))
        if x_tangent is not None:
            terms.append(_MyOpCurvature.apply(grad, x_tangent, x))
        return sum(terms[1:], terms[0])


class _MyOpJvp(torch.autograd.Function):
    """tangent_y = jvp(tangent, x), linear in tangent."""

    generate_vmap_rule = True

    @staticmethod
    def forward(tangent, x):
        return my_op_jvp_op(tangent, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        tangent, x = ctx.saved_tensors
        grad_of_tangent = _MyOpBackward.apply(grad, x) if ctx.needs_input_grad[0] else None
        grad_of_x = _MyOpCurvature.apply(grad, tangent, x) if ctx.needs_input_grad[1] else None
        return grad_of_tangent, grad_of_x

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError("my_op: forward-over-forward derivatives are not supported; use reverse mode inside")


class _MyOpCurvature(torch.autograd.Function):
    """The second-derivative term. Differentiating it again would be a third derivative."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, direction, x):
        return my_op_curvature_op(grad, direction, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("my_op: third derivatives are not supported; first and second derivatives are")

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError("my_op: third derivatives are not supported; first and second derivatives are")


def _apply(x: Tensor) -> Tensor:
    # torch.compile traces the Function without jvp; compiled code runs no forward-mode AD.
    return (_MyOpForCompile if torch.compiler.is_compiling() else MyOpFunction).apply(x)


register_public_op(__package__, "my_op", "(Tensor x) -> Tensor", _apply)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


def my_op(x: Tensor) -> Tensor:
    """Your op on a float tensor of any shape. Placeholder: sin(x), same shape and dtype.

    float16 and bfloat16 are computed in float32; under autocast the result is float32.
    """
    check_tensor("my_op", "x", x)
    return _apply(x)


class MyOp(nn.Module):
    """`my_op` as a module, for use in `nn.Sequential`."""

    def forward(self, x: Tensor) -> Tensor:
        return my_op(x)
