"""BadFFT: the magnitude of the 2-D real FFT, y = |rfft2(x)|, as a differentiable op.

The original "Creating extensions using numpy and scipy" tutorial used
`irfft2(grad_output)` as the backward. That is not the gradient: gradcheck fails
on it, and it crashes for odd widths. The gradient is

    G      = grad · Y / |Y|   (0 where |Y| = 0, like torch.sgn)
    grad_x = irfft2(G · c, s=(H, W), norm="forward")

where c is 1 on column 0 (and on the last column when W is even) and 1/2 on the
others, whose conjugate twins rfft2 leaves out.
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
# ----------------------------------------------------------------------------


def bad_fft_kernel(backend: ArrayBackend, x):
    """|rfft2(x)| over the last two dims."""
    xp = backend.xp
    magnitude = xp.abs(backend.rfft2(x))
    # One Inf or NaN reaches every bin of its image, but FFT libraries differ on Inf - Inf: pocketfft
    # gives NaN where native torch gives Inf. As native: an image with a NaN is all NaN, else one
    # with an Inf is all Inf.
    finite = xp.isfinite(x).all(axis=(-2, -1))
    if not finite.all():
        magnitude[~finite] = xp.inf
        magnitude[xp.isnan(x).any(axis=(-2, -1))] = xp.nan
    return magnitude


def bad_fft_backward_kernel(backend: ArrayBackend, grad, x):
    """The gradient of |rfft2(x)| with respect to x, given the output's gradient."""
    xp = backend.xp
    spectrum = backend.rfft2(x)
    magnitude = xp.abs(spectrum)
    # Where |Y| = 0, Y itself is 0, so any finite scale gives G = 0 there; 1 avoids 0/0.
    scale = grad / xp.where(magnitude > 0, magnitude, magnitude.dtype.type(1))
    width = x.shape[-1]
    scale[..., 1 : (width + 1) // 2] *= 0.5  # the columns that stand for two
    return backend.irfft2(spectrum * scale, s=x.shape[-2:], norm="forward")


# ----------------------------------------------------------------------------
# 2. PyTorch plumbing: custom ops with fakes and vmap rules, and autograd.
#    The autograd.Function is what torch.func (grad, jacrev) needs.
# ----------------------------------------------------------------------------


# The ops check their inputs, in the implementation and in the fake, so that the public
# function, torch.ops, torch.compile and export all refuse the same input alike.
@torch.library.custom_op(f"{__package__}::bad_fft", mutates_args=())
def bad_fft_op(x: Tensor) -> Tensor:
    check_image("bad_fft", "x", x)
    return run_kernel(bad_fft_kernel, x)


@bad_fft_op.register_fake
def _(x):
    check_image("bad_fft", "x", x)
    return x.new_empty(*x.shape[:-1], x.shape[-1] // 2 + 1)


@bad_fft_op.register_vmap
def _(info, in_dims, x):
    return bad_fft_op(*batch_first((x,), in_dims)), 0


@torch.library.custom_op(f"{__package__}::bad_fft_backward", mutates_args=())
def bad_fft_backward_op(grad: Tensor, x: Tensor) -> Tensor:
    check_image("bad_fft_backward", "x", x)
    check_like("bad_fft_backward", "grad", grad, "x", x)
    return run_kernel(bad_fft_backward_kernel, grad, x)


@bad_fft_backward_op.register_fake
def _(grad, x):
    check_image("bad_fft_backward", "x", x)
    check_like("bad_fft_backward", "grad", grad, "x", x)
    return x.new_empty(torch.broadcast_shapes(grad.shape[:-2], x.shape[:-2]) + x.shape[-2:])


@bad_fft_backward_op.register_vmap
def _(info, in_dims, grad, x):
    return bad_fft_backward_op(*batch_first((grad, x), in_dims)), 0


class BadFFTFunction(torch.autograd.Function):
    """|rfft2(x)| with its true gradient. Works with torch.compile and torch.func."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return bad_fft_op(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        x = x.to(grad.dtype)  # under autocast the op ran on x in float32; elsewhere this is x itself
        # Only double backward and torch.func need the backward's own Function; it costs ~25 µs.
        backward = _BadFFTBackward.apply if torch.is_grad_enabled() else bad_fft_backward_op
        return backward(grad, x)


class _BadFFTBackward(torch.autograd.Function):
    """The backward as a Function of its own, so differentiating it again fails loudly."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x):
        return bad_fft_backward_op(grad, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad_grad_x):
        raise RuntimeError("bad_fft: double backward is not supported; only first derivatives are")


# Calling the ops directly (torch.ops.<namespace>.bad_fft) is differentiable too.
bad_fft_op.register_autograd(BadFFTFunction.backward, setup_context=BadFFTFunction.setup_context)
bad_fft_backward_op.register_autograd(_BadFFTBackward.backward, setup_context=_BadFFTBackward.setup_context)
for op in (bad_fft_op, bad_fft_backward_op):
    run_in_float32_under_autocast(op)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


def bad_fft(x: Tensor) -> Tensor:
    """|rfft2(x)| over the last two dims of a float tensor of shape (..., H, W).

    Returns a tensor of shape (..., H, W // 2 + 1) and the dtype of `x`. float16 and
    bfloat16 are computed in float32; under autocast the result is float32.
    """
    check_tensor("bad_fft", "x", x)
    return BadFFTFunction.apply(x)


class BadFFT(nn.Module):
    """`bad_fft` as a parameter-free module, for use in `nn.Sequential`."""

    def forward(self, x: Tensor) -> Tensor:
        return bad_fft(x)
