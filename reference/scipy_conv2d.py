"""ScipyConv2d: valid 2-D cross-correlation with a learnable kernel, y = x ⋆ w + b.

Deep-learning "convolution" is this cross-correlation. Its gradients are the
op itself and its transpose, the full convolution:

```
grad_x = g fully convolved with w (the transpose)
grad_w = x correlated with g
grad_b = the sum of g
```

so every derivative kernel calls the array kernel, in one mode or the other. The op
is bilinear in x and w and affine in b: its third derivatives are zero. The kernel
picks its algorithm by shape: shifted multiply-adds when there are few kernel taps
(or few outputs), FFT correlation otherwise, unless the image's range would make
the FFT less accurate than a direct sum.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula
from torch_scipy_op import FLOAT_DTYPES, ArrayBackend, check_image, declare_op, int_argument

# Up to this many terms (kernel taps, or outputs), shifted multiply-adds beat three FFTs. A term is
# two array operations. On NumPy one costs ~3 µs plus ~0.7 ns per output, and the FFT route ~60 µs
# plus ~30 ns per image element: they break even at ~30 terms on 32x32 images and at 50-70 from
# 128x128 up, so kernels up to 7x7 go direct. On CuPy each operation is a kernel launch of its own,
# tens of µs, so the FFT route wins sooner.
_MAX_DIRECT_TERMS = {"numpy": 49, "cupy": 16}

# An FFT's rounding error is spread over every output alike: about eps * rms(x) * |w|, and up to ~10
# times that on some outputs (measured to 256x256), with eps float64's, the FFT route's dtype, and |w|
# the kernel's 2-norm. A direct sum of k taps, native's included, errs by at most k * eps_out times its
# own window's magnitude, about the window's rms of x times |w|. So the FFT is as accurate where rms(x)
# is within k * eps_out / (16 * eps) of the rms of x's quiet parts. One outlier of 1e12 among values of
# ~1 breaks that, and would cost float64 outputs seven digits; such images are summed directly. The
# quiet parts' mean square is the geometric mean of the rows' (and apart, the columns'), which one
# outlier moves little. A line counts as no quieter than the limit squared below the mean, so empty
# lines (a zero-padded border) flag an image only when they are most of it. w needs no check: each
# window of the correlation holds all of it, so its range scales the error and the outputs alike.
_FFT_ERROR_FACTOR = 16

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
# ----------------------------------------------------------------------------


def scipy_conv2d_kernel(backend: ArrayBackend, x, w, transposed=False):
    """Valid cross-correlation of x (..., H, W) with w (..., kH, kW); leading dims broadcast.

    With `transposed`, its transpose for x: the full convolution of x with w, of shape
    (..., H + kH - 1, W + kW - 1), which is the gradient for the correlation's input.
    """
    xp = backend.xp
    kh, kw = w.shape[-2:]
    grow = 1 if transposed else -1
    out_h, out_w = x.shape[-2] + grow * (kh - 1), x.shape[-1] + grow * (kw - 1)
    if min(kh * kw, out_h * out_w) <= _MAX_DIRECT_TERMS[xp.__name__]:
        return _correlate_directly(xp, x, w, out_h, out_w, transposed)
    wide = x.astype(xp.float64, copy=False)
    limit = kh * kw * np.finfo(x.dtype).eps / (_FFT_ERROR_FACTOR * np.finfo(xp.float64).eps)
    # An Inf or NaN in w would reach every output through the FFT: its images are summed directly, as native's.
    inexact = _fft_is_inexact(xp, wide, limit**2) | ~xp.isfinite(w).all(axis=(-2, -1))
    if xp is np and inexact.all():  # reading it costs nothing on the host
        return _correlate_directly(xp, x, w, out_h, out_w, transposed)
    out = _correlate_by_fft(backend, wide, w, out_h, out_w, transposed).astype(x.dtype)
    if xp is np:
        return _redo_directly_on_numpy(x, w, out, inexact, transposed)
    return _redo_directly_on_cupy(xp, x, w, out, inexact, transposed)


def _correlate_directly(xp, x, w, out_h, out_w, transposed):
    """Whichever direct sum has fewer terms."""
    # No zero padding, whose products with an Inf tap are NaN: where w has one, and on CuPy, where reading
    # that back would stop the GPU (the same operations, without the padded copy).
    if transposed and (xp is not np or not xp.isfinite(w).all()):
        return _convolve_fully_by_taps(xp, x, w)
    if transposed:  # the full convolution is the valid correlation of x, zero-padded, with w flipped
        kh, kw = w.shape[-2:]
        padded = xp.zeros((*x.shape[:-2], x.shape[-2] + 2 * (kh - 1), x.shape[-1] + 2 * (kw - 1)), dtype=x.dtype)
        padded[..., kh - 1 : kh - 1 + x.shape[-2], kw - 1 : kw - 1 + x.shape[-1]] = x
        x, w = padded, w[..., ::-1, ::-1]
    if w.shape[-2] * w.shape[-1] <= out_h * out_w:
        return _correlate_by_taps(xp, x, w, out_h, out_w)
    return _correlate_by_outputs(xp, x, w, out_h, out_w)


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


def _convolve_fully_by_taps(xp, x, w):
    """The full convolution of x with w, each tap's product added where it lands: only products of x's own
    values, as native's transposed convolution sums them."""
    (h, width), (kh, kw) = x.shape[-2:], w.shape[-2:]
    out = xp.zeros((*_batch(xp, x, w), h + kh - 1, width + kw - 1), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[..., i : i + h, j : j + width] += w[..., i, j, None, None] * x
    return out


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


def _fft_is_inexact(xp, x, limit):
    """Per image of x: whether its range makes the FFT route less accurate than a direct sum (see above).

    `limit` bounds the ratio of x's mean square to its quiet lines'. Inf and NaN, which an
    FFT spreads over every output, count as inexact too.
    """
    squares = x * x
    rows, columns = squares.mean(axis=-1), squares.mean(axis=-2)
    mean = rows.mean(axis=-1)
    floor = mean[..., None] / limit**2
    inexact = ~xp.isfinite(mean)
    for lines in (rows, columns):
        inexact |= mean > limit * xp.exp(xp.log(xp.maximum(lines, floor)).mean(axis=-1))
    return inexact


def _correlate_by_fft(backend, x, w, out_h, out_w, transposed):
    # With an FFT at least as large as x (as the output, for the full convolution), the
    # circular correlation has no wrap-around where the outputs are, so it is exact. Its
    # rounding error scales with the whole image, so float32 runs in float64 (x already
    # is): small outputs beside large ones keep their digits.
    xp = backend.xp
    grow = 1 if transposed else 0
    size = tuple(backend.next_fast_len(n + grow * (k - 1)) for n, k in zip(x.shape[-2:], w.shape[-2:], strict=True))
    spectrum = backend.rfft2(w.astype(xp.float64), s=size)
    product = backend.rfft2(x, s=size) * (spectrum if transposed else spectrum.conj())
    return backend.irfft2(product, s=size)[..., :out_h, :out_w]


def _redo_directly_on_numpy(x, w, out, inexact, transposed):
    """`out` with the images that `inexact` flags summed directly instead."""
    if not inexact.any():
        return out
    batch = out.shape[:-2]
    inexact = np.broadcast_to(inexact, batch)
    images = np.broadcast_to(x, batch + x.shape[-2:])[inexact]
    kernels = np.broadcast_to(w, batch + w.shape[-2:])[inexact]
    out[inexact] = _correlate_directly(np, images, kernels, *out.shape[-2:], transposed)
    return out


def _redo_directly_on_cupy(xp, x, w, out, inexact, transposed):
    """`out` with the images that `inexact` flags summed directly instead, in one launch.

    Reading `inexact` back would stop the GPU and copy; the kernel's threads for
    other images return at once instead.
    """
    x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
    image_at = xp.arange(math.prod(x.shape[:-2])).reshape(*x.shape[:-2], 1, 1) * (x.shape[-2] * x.shape[-1])
    kernel_at = xp.arange(math.prod(w.shape[:-2])).reshape(*w.shape[:-2], 1, 1) * (w.shape[-2] * w.shape[-1])
    shapes = (*x.shape[-2:], *w.shape[-2:], *out.shape[-2:])
    _direct_sum_on_cupy(xp)(
        inexact[..., None, None], image_at, kernel_at, x.ravel(), w.ravel(), *shapes, transposed, out
    )
    return out


@functools.cache
def _direct_sum_on_cupy(cupy):
    return cupy.ElementwiseKernel(
        "bool inexact, int64 image_at, int64 kernel_at, raw T x, raw T w, int64 h, int64 width, int64 kh, int64 kw,"
        " int64 out_h, int64 out_w, bool transposed",
        "T out",
        """
        if (inexact) {
            const long long p = i / out_w % out_h, q = i % out_w;
            double sum = 0;
            for (long long a = 0; a < kh; ++a) {
                for (long long b = 0; b < kw; ++b) {
                    const long long r = transposed ? p - a : p + a, c = transposed ? q - b : q + b;
                    if (0 <= r && r < h && 0 <= c && c < width) {
                        sum += (double)x[image_at + r * width + c] * (double)w[kernel_at + a * kw + b];
                    }
                }
            }
            out = (T)sum;
        }
        """,
        "scipy_conv2d_direct_sum",
    )


def scipy_conv2d_forward_kernel(backend: ArrayBackend, input, weight, bias):
    """The forward: the valid correlation, plus the bias where there is one."""
    out = scipy_conv2d_kernel(backend, input, weight)
    return out if bias is None else out + bias  # out has at least 2 dims, so this keeps its shape


def scipy_conv2d_backward_kernel(backend: ArrayBackend, grad, input, weight, bias, needs_input_grad):
    """Reverse mode: the op's transpose for the input, the input correlated with grad for the weight.

    Only the gradients that are wanted: the input of a first layer needs none.
    """
    wants_input, wants_weight, wants_bias = needs_input_grad
    grad_input = scipy_conv2d_kernel(backend, grad, weight, transposed=True) if wants_input else None
    grad_weight = _weight_gradient(backend, input, grad) if wants_weight else None
    return grad_input, grad_weight, grad.sum().reshape(bias.shape) if wants_bias else None


def scipy_conv2d_jvp_kernel(
    backend: ArrayBackend,
    input_tangent,
    weight_tangent,
    bias_tangent,
    input,
    weight,
):
    """Forward mode: the op is bilinear, so its derivative is the op itself, once per input that moves."""
    moved = scipy_conv2d_forward_kernel(backend, input_tangent, weight, bias_tangent)
    return moved + scipy_conv2d_kernel(backend, input, weight_tangent)


def scipy_conv2d_curvature_kernel(backend: ArrayBackend, grad, input_direction, weight_direction):
    """Second order: each gradient moves with the other input only; the bias's does not move."""
    grad_input = scipy_conv2d_kernel(backend, grad, weight_direction, transposed=True)
    return grad_input, _weight_gradient(backend, input_direction, grad), 0


def _weight_gradient(backend, input, grad):
    """Each image of `input` correlated with its own output gradient, summed over the leading dims to (kH, kW)."""
    per_image = scipy_conv2d_kernel(backend, input, grad)  # grad's leading dims make one kernel per image
    return per_image.sum(axis=tuple(range(per_image.ndim - 2)))


# ----------------------------------------------------------------------------
# 2. The declaration: the op's schema, its kernels, its rules.
# ----------------------------------------------------------------------------


def _check(input, weight, bias):
    """The op's rules, on the arguments as the user passed them (after autocast's cast)."""
    check_image("scipy_conv2d", "input", input)
    if weight.dim() != 2:
        raise ValueError(f"scipy_conv2d: weight must be 2-D (kH, kW), got shape {tuple(weight.shape)}")
    check_image("scipy_conv2d", "weight", weight)
    if weight.shape[-2] > input.shape[-2] or weight.shape[-1] > input.shape[-1]:
        raise ValueError(
            f"scipy_conv2d: weight of shape {tuple(weight.shape)} is larger than the input's "
            f"last two dims {tuple(input.shape[-2:])}; the kernel must fit inside the input"
        )
    if bias is not None and (bias.numel() != 1 or bias.dim() > 2):
        rule = "bias must hold one element (shape (), (1,) or (1, 1))"
        raise ValueError(f"scipy_conv2d: {rule}, got shape {tuple(bias.shape)}")


def _output(input, weight, bias):
    """The fake: the output, (..., H - kH + 1, W - kW + 1), uncomputed. A weight with leading dims broadcasts."""
    batch = torch.broadcast_shapes(input.shape[:-2], weight.shape[:-2])
    return input.new_empty(*batch, input.shape[-2] - weight.shape[-2] + 1, input.shape[-1] - weight.shape[-1] + 1)


scipy_conv2d_declared = declare_op(
    f"{__package__}::scipy_conv2d",
    "(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor",
    forward=scipy_conv2d_forward_kernel,
    backward=scipy_conv2d_backward_kernel,
    jvp=scipy_conv2d_jvp_kernel,
    curvature=scipy_conv2d_curvature_kernel,
    parameters=("weight", "bias"),  # weight (kH, kW), bias one element
    batched=True,  # the kernels broadcast over the input's leading dims
    third_derivatives_are_zero=True,  # bilinear in input and weight, affine in bias
    check=_check,
    fake=_output,
)


def _correlation_flops(output_shape, weight_shape) -> int:
    """As torch counts its own convolutions: a multiply and an add per kernel tap and output."""
    return 2 * math.prod(output_shape) * math.prod(weight_shape[-2:])


@register_flop_formula(scipy_conv2d_declared.kernel_ops["forward"].op.overloadpacket)
def _forward_flops(input_shape, weight_shape, bias_shape=None, *, out_shape, **kwargs) -> int:
    return _correlation_flops(out_shape, weight_shape)  # the bias adds nothing, as in torch's count


@register_flop_formula(scipy_conv2d_declared.kernel_ops["backward"].op.overloadpacket)
def _backward_flops(grad_shape, input_shape, weight_shape, bias_shape, *targets, **kwargs) -> int:
    """As torch counts a convolution's backward: each of the input's and the weight's gradients that it gives
    (its target is a shape, not None) costs a forward. The input's, the transposed correlation, counts the
    gradient's elements, as torch's transposed convolutions count their inputs. The bias's adds nothing.
    """
    input_target, weight_target, _ = targets
    return ((input_target is not None) + (weight_target is not None)) * _correlation_flops(grad_shape, weight_shape)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


@scipy_conv2d_declared.public
def scipy_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Valid 2-D cross-correlation of `input` (..., H, W) with `weight` (kH, kW), plus `bias`.

    `bias` is optional and holds one element (shape (), (1,) or (1, 1)). Returns a
    tensor of shape (..., H - kH + 1, W - kW + 1) and the dtype of `input`. float16
    and bfloat16 are computed in float32; under autocast they give float32, and
    float64 stays float64.
    """
    return scipy_conv2d_declared(input, weight, bias)


class ScipyConv2d(nn.Module):
    """A learnable (kh, kw) kernel and an optional one-element bias, applied with `scipy_conv2d`."""

    def __init__(self, kh: int, kw: int, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        for name, size in (("kh", kh), ("kw", kw)):
            if int_argument("ScipyConv2d", name, size) < 1:
                raise ValueError(f"ScipyConv2d: {name} must be a positive int, got {size!r}")
        if dtype is not None and dtype not in FLOAT_DTYPES:
            rule = "dtype must be float16, bfloat16, float32 or float64"
            raise TypeError(f"ScipyConv2d: {rule}, got {dtype}")
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
