"""MyOp: a blank op to fill with your own NumPy/SciPy math.

It comes with the simplest correct placeholder, y = sin(x) elementwise, so that
every test passes before you change anything. To make it yours:

1. Replace the two array kernels below: the forward, and the backward that maps
   the output's gradient to the input's.
2. Update the fake if the output's shape or dtype differs from the input's.
3. Replace `native` in the tests with a torch version of your op, if one exists.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._boundary import (
    ArrayBackend,
    batch_first,
    check_image,
    check_like,
    check_tensor,
    run_in_float32_under_autocast,
    run_kernel,
)

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
#    `backend.xp` is numpy or cupy; `backend.rfft2` and friends wrap their FFTs.
# ----------------------------------------------------------------------------


def my_op_kernel(backend: ArrayBackend, x):
    """The forward. Placeholder: sin(x)."""
    return backend.xp.sin(x)


def my_op_backward_kernel(backend: ArrayBackend, grad, x):
    """The gradient with respect to x, given the output's gradient. Placeholder: grad * cos(x)."""
    return grad * backend.xp.cos(x)


# ----------------------------------------------------------------------------
# 2. PyTorch plumbing: custom ops with fakes and vmap rules, and autograd.
#    The autograd.Function is what torch.func (grad, jacrev) needs.
# ----------------------------------------------------------------------------


# The ops check their inputs, in the implementation and in the fake, so that the public
# function, torch.ops, torch.compile and export all refuse the same input alike.
@torch.library.custom_op(f"{__package__}::my_op", mutates_args=())
def my_op_op(x: Tensor) -> Tensor:
    check_image("my_op", "x", x)
    return run_kernel(my_op_kernel, x)


@my_op_op.register_fake
def _(x):
    check_image("my_op", "x", x)
    # The output's shape and dtype, without computing it (torch.compile, meta tensors).
    return torch.empty_like(x)


@my_op_op.register_vmap
def _(info, in_dims, x):
    return my_op_op(*batch_first((x,), in_dims)), 0


@torch.library.custom_op(f"{__package__}::my_op_backward", mutates_args=())
def my_op_backward_op(grad: Tensor, x: Tensor) -> Tensor:
    check_image("my_op_backward", "x", x)
    check_like("my_op_backward", "grad", grad, "x", x)
    return run_kernel(my_op_backward_kernel, grad, x)


@my_op_backward_op.register_fake
def _(grad, x):
    check_image("my_op_backward", "x", x)
    check_like("my_op_backward", "grad", grad, "x", x)
    return x.new_empty(torch.broadcast_shapes(grad.shape, x.shape))


@my_op_backward_op.register_vmap
def _(info, in_dims, grad, x):
    return my_op_backward_op(*batch_first((grad, x), in_dims)), 0


class MyOpFunction(torch.autograd.Function):
    """my_op with its gradient. Works with torch.compile and torch.func."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return my_op_op(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        x = x.to(grad.dtype)  # under autocast the op ran on x in float32; elsewhere this is x itself
        # Only double backward and torch.func need the backward's own Function; it costs ~25 µs.
        backward = _MyOpBackward.apply if torch.is_grad_enabled() else my_op_backward_op
        return backward(grad, x)


class _MyOpBackward(torch.autograd.Function):
    """The backward as a Function of its own, so differentiating it again fails loudly."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x):
        return my_op_backward_op(grad, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad_grad_x):
        raise RuntimeError("my_op: double backward is not supported; only first derivatives are")


# Calling the ops directly (torch.ops.<namespace>.my_op) is differentiable too.
my_op_op.register_autograd(MyOpFunction.backward, setup_context=MyOpFunction.setup_context)
my_op_backward_op.register_autograd(_MyOpBackward.backward, setup_context=_MyOpBackward.setup_context)
for op in (my_op_op, my_op_backward_op):
    run_in_float32_under_autocast(op)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


def my_op(x: Tensor) -> Tensor:
    """Your op on a float tensor of shape (..., H, W). Placeholder: sin(x), same shape and dtype.

    float16 and bfloat16 are computed in float32; under autocast the result is float32.
    """
    check_tensor("my_op", "x", x)
    return MyOpFunction.apply(x)


class MyOp(nn.Module):
    """`my_op` as a module, for use in `nn.Sequential`."""

    def forward(self, x: Tensor) -> Tensor:
        return my_op(x)
