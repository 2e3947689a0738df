"""ScipyConv2d: valid 2-D cross-correlation with a learnable kernel, y = x ⋆ w + b.

Deep-learning "convolution" is this cross-correlation. Its gradients are
cross-correlations too:

    grad_x = g zero-padded by (kH - 1, kW - 1), correlated with w flipped
    grad_w = x correlated with g
    grad_b = the sum of g

so the backward calls the op itself, and the op is differentiable any number of
times. The kernel picks its algorithm by shape: shifted multiply-adds when there
are few kernel taps (or few outputs), FFT correlation otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._boundary import (
    FLOAT_DTYPES,
    ArrayBackend,
    check_image,
    check_like,
    check_tensor,
    function_applier,
    kernel_op,
    register_public_op,
)

# Up to this many terms (kernel taps, or outputs), shifted multiply-adds beat three FFTs. A term is
# two array operations. On NumPy one costs ~3 µs plus ~0.7 ns per output, and the FFT route ~60 µs
# plus ~30 ns per image element: they break even at ~30 terms on 32x32 images and at 50-70 from
# 128x128 up, so kernels up to 7x7 go direct. On CuPy each operation is a kernel launch of its own,
# tens of µs, so the FFT route wins sooner.
_MAX_DIRECT_TERMS = {"numpy": 49, "cupy": 16}

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
# ----------------------------------------------------------------------------


# Native torch gives Inf and NaN without a warning, and NumPy's would fail a suite whose warnings
# are errors. (The direct route also computes columns it drops, which could warn where no output is.)
@np.errstate(invalid="ignore", over="ignore")
def scipy_conv2d_kernel(backend: ArrayBackend, x, w):
    """Valid cross-correlation of x (..., H, W) with w (..., kH, kW); leading dims broadcast."""
    xp = backend.xp
    kh, kw = w.shape[-2:]
    out_h, out_w = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1
    most = _MAX_DIRECT_TERMS[xp.__name__]
    if kh * kw <= most:
        return _correlate_by_taps(xp, x, w, out_h, out_w)
    if out_h * out_w <= most:
        return _correlate_by_outputs(xp, x, w, out_h, out_w)
    # An FFT spreads one Inf or NaN over every output; the direct sum keeps it in the windows that hold it.
    if not (xp.isfinite(x).all() and xp.isfinite(w).all()):
        return _correlate_by_taps(xp, x, w, out_h, out_w)
    return _correlate_by_fft(backend, x, w, out_h, out_w)


def _correlate_by_taps(xp, x, w, out_h, out_w):
    # With x's last two dims flattened into rows of `width`, tap (i, j)'s window for
    # every output is one contiguous run, starting at i * width + j: contiguous runs
    # are faster to multiply-add than 2-D windows. The run also covers the width -
    # out_w columns past each output row, which wrap into the next image row; they
    # are computed, never mixed into the outputs, and dropped.
    kh, kw = w.shape[-2:]
    width = x.shape[-1]
    rows = x.reshape(*x.shape[:-2], x.shape[-2] * width)
    length = out_h * width - (kw - 1)  # from the first output to the last; the last row stops at out_w
    full = xp.empty((*_batch(xp, x, w), out_h * width), dtype=x.dtype)
    run = full[..., :length]
    xp.multiply(w[..., 0, 0, None], rows[..., :length], out=run)
    for i in range(kh):
        for j in range(kw):
            if i or j:
                start = i * width + j
                run += w[..., i, j, None] * rows[..., start : start + length]
    return full.reshape(*full.shape[:-1], out_h, width)[..., :out_w]


def _correlate_by_outputs(xp, x, w, out_h, out_w):
    kh, kw = w.shape[-2:]
    out = xp.empty((*_batch(xp, x, w), out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            out[..., i, j] = xp.einsum("...ij,...ij->...", x[..., i : i + kh, j : j + kw], w)  # no temporary
    return out


def _batch(xp, x, w):
    """The leading dims of x and w, broadcast: those of the output."""
    return xp.broadcast(x[..., 0, 0], w[..., 0, 0]).shape


def _correlate_by_fft(backend, x, w, out_h, out_w):
    # With an FFT at least as large as x, the valid part of the circular
    # correlation has no wrap-around, so it is exact. Its rounding error scales with
    # the largest value in the whole image, not with the outputs around it, so
    # float32 runs in float64: small outputs beside large ones keep their digits.
    wide = backend.xp.float64
    size = tuple(backend.next_fast_len(n) for n in x.shape[-2:])
    product = backend.rfft2(x.astype(wide), s=size) * backend.rfft2(w.astype(wide), s=size).conj()
    return backend.irfft2(product, s=size)[..., :out_h, :out_w].astype(x.dtype)


# ----------------------------------------------------------------------------
# 2. PyTorch plumbing: the custom op for the kernel, and autograd.
#    The autograd.Function is what torch.func (grad, jacrev, jvp) needs.
# ----------------------------------------------------------------------------


def _check(input, weight):
    """The op's rules, from its implementation and its fake, so that every path refuses alike."""
    check_image("scipy_conv2d", "input", input)
    check_image("scipy_conv2d", "weight", weight)
    check_like("scipy_conv2d", "weight", weight, "input", input)
    if weight.shape[-2] > input.shape[-2] or weight.shape[-1] > input.shape[-1]:
        raise ValueError(
            f"scipy_conv2d: weight of shape {tuple(weight.shape)} is larger than the input's "
            f"last two dims {tuple(input.shape[-2:])}; the kernel must fit inside the input"
        )


def _valid_output(input, weight):
    """The fake: the output's shape, (..., H - kH + 1, W - kW + 1), without computing it."""
    batch = torch.broadcast_shapes(input.shape[:-2], weight.shape[:-2])
    height = input.shape[-2] - weight.shape[-2] + 1
    width = input.shape[-1] - weight.shape[-1] + 1
    return input.new_empty(*batch, height, width)


# The custom op, with its check, fake, vmap rule and autocast (see `kernel_op`).
scipy_conv2d_forward_op = kernel_op(
    f"{__package__}::scipy_conv2d_forward",
    "(Tensor input, Tensor weight) -> Tensor",
    scipy_conv2d_kernel,
    check=_check,
    fake=_valid_output,
)


class ScipyConv2dFunction(torch.autograd.Function):
    """Valid cross-correlation with derivatives for input and weight, to any order, reverse and forward.

    The weight may carry leading dims that broadcast against the input's; the
    backward uses that to correlate each input with its own output gradient.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight):
        return scipy_conv2d_forward_op(input, weight)

    @staticmethod
    def setup_context(ctx, inputs, output):
        # Under autocast the op ran on its inputs in float32; elsewhere these are the inputs themselves.
        inputs = [t.to(output.dtype) for t in inputs]
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        input, weight = ctx.saved_tensors
        # Only double backward and torch.func need the Function; the bare op saves ~25 µs a call.
        correlate = ScipyConv2dFunction.apply if torch.is_grad_enabled() else scipy_conv2d_forward_op
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            kh, kw = weight.shape[-2:]
            padded = F.pad(grad, (kw - 1, kw - 1, kh - 1, kh - 1))
            grad_input = correlate(padded, weight.flip(-2, -1)).sum_to_size(input.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = correlate(input, grad).sum_to_size(weight.shape)
        return grad_input, grad_weight

    @staticmethod
    def jvp(ctx, input_tangent, weight_tangent):
        # The op is bilinear, so its derivative in a direction is the op itself, once per input that moves.
        input, weight = ctx.saved_tensors
        terms = []
        if input_tangent is not None:
            terms.append(ScipyConv2dFunction.apply(input_tangent.to(input.dtype), weight))
        if weight_tangent is not None:
            terms.append(ScipyConv2dFunction.apply(input, weight_tangent.to(weight.dtype)))
        return sum(terms[1:], terms[0])


_apply = function_applier(ScipyConv2dFunction)
register_public_op(__package__, "scipy_conv2d", "(Tensor input, Tensor weight) -> Tensor", _apply)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


def scipy_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Valid 2-D cross-correlation of `input` (..., H, W) with `weight` (kH, kW), plus `bias`.

    `bias` is optional and holds one element (shape (), (1,) or (1, 1)). Returns a
    tensor of shape (..., H - kH + 1, W - kW + 1) and the dtype of `input`. float16
    and bfloat16 are computed in float32; under autocast the result is float32.
    """
    check_tensor("scipy_conv2d", "input", input)
    check_tensor("scipy_conv2d", "weight", weight)
    if weight.dim() != 2:
        raise ValueError(f"scipy_conv2d: weight must be 2-D (kH, kW), got shape {tuple(weight.shape)}")
    if bias is not None:
        check_tensor("scipy_conv2d", "bias", bias)
        if not torch.is_autocast_enabled(input.device.type):  # autocast casts mixed dtypes itself
            check_like("scipy_conv2d", "bias", bias, "input", input)
        if bias.numel() != 1 or bias.dim() > 2:
            raise ValueError(
                f"scipy_conv2d: bias must hold one element (shape (), (1,) or (1, 1)), got shape {tuple(bias.shape)}"
            )
    out = _apply(input, weight)
    return out if bias is None else out + bias  # out has at least 2 dims, so this keeps its shape


class ScipyConv2d(nn.Module):
    """A learnable (kh, kw) kernel and an optional one-element bias, applied with `scipy_conv2d`."""

    def __init__(self, kh: int, kw: int, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        for name, size in (("kh", kh), ("kw", kw)):
            if not isinstance(size, int) or isinstance(size, bool):
                raise TypeError(f"ScipyConv2d: {name} must be an int, got {type(size).__name__}")
            if size < 1:
                raise ValueError(f"ScipyConv2d: {name} must be a positive int, got {size!r}")
        if dtype is not None and dtype not in FLOAT_DTYPES:
            raise TypeError(f"ScipyConv2d: dtype must be float16, bfloat16, float32 or float64, got {dtype}")
        self.weight = nn.Parameter(torch.empty(kh, kw, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(1, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As nn.Conv2d does: uniform in ±1/sqrt(fan_in), with fan_in = kh * kw.
        bound = 1 / math.sqrt(self.weight.numel())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return scipy_conv2d(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"kernel_size={tuple(self.weight.shape)}, bias={self.bias is not None}"
