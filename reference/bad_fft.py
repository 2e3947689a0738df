"""BadFFT: the magnitude of the 2-D real FFT, y = |rfft2(x)|, as a differentiable op.

The original "Creating extensions using numpy and scipy" tutorial used
`irfft2(grad_output)` as the backward. That is not the gradient: gradcheck fails
on it, and it crashes for odd widths. The gradient is

    G      = grad · Y / |Y|   (0 where |Y| = 0, like torch.sgn)
    grad_x = irfft2(G · c, s=(H, W), norm="forward")

where c is 1 on column 0 (and on the last column when W is even) and 1/2 on the
others, whose conjugate twins rfft2 leaves out. The forward-mode derivative in a
direction t is Re(conj(Y) · rfft2(t)) / |Y|, and the second derivative has a
kernel of its own, so jvp, double backward and hessians work too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ._boundary import (
    ArrayBackend,
    check_image,
    check_tensor,
    function_applier,
    kernel_op,
    public_op,
    register_public_op,
)

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
# ----------------------------------------------------------------------------


def bad_fft_kernel(backend: ArrayBackend, x):
    """|rfft2(x)| over the last two dims, and the spectrum Y = rfft2(x), which the derivatives use."""
    xp = backend.xp
    spectrum = backend.rfft2(x)
    magnitude = xp.abs(spectrum)
    # One Inf or NaN reaches every bin of its image, its sum (bin 0) included. On CUDA, cuFFT is
    # native's own FFT, and so is its Inf and NaN pattern.
    if xp is not np or np.isfinite(magnitude[..., 0, 0]).all():
        return magnitude, spectrum
    # FFT libraries differ on Inf - Inf: pocketfft gives NaN where native torch on the CPU gives Inf.
    # As native for one Inf or NaN: an image with a NaN is all NaN, else one with an Inf is all Inf.
    # (With several, which bins are NaN depends on each library's order of operations.)
    finite = xp.isfinite(x).all(axis=(-2, -1), keepdims=True)
    has_nan = xp.isnan(x).any(axis=(-2, -1), keepdims=True)
    nan, inf = magnitude.dtype.type(xp.nan), magnitude.dtype.type(xp.inf)
    return xp.where(finite, magnitude, xp.where(has_nan, nan, inf)), spectrum


def bad_fft_backward_kernel(backend: ArrayBackend, grad, spectrum, width):
    """The gradient of |rfft2(x)| with respect to x, given the output's gradient and Y; x is `width` wide."""
    shape = (spectrum.shape[-2], width)
    return _adjoint(backend, backend.fuse(_times_phase)(grad, spectrum), shape)


def bad_fft_jvp_kernel(backend: ArrayBackend, tangent, spectrum):
    """The forward derivative of |rfft2(x)| in the direction `tangent`: Re(conj(Y) · rfft2(tangent)) / |Y|."""
    return backend.fuse(_along_phase)(backend.rfft2(tangent), spectrum)


def bad_fft_curvature_kernel(backend: ArrayBackend, grad, direction, spectrum):
    """How the gradient moves when x moves in `direction`: the second derivative, symmetric in both.

    With T = rfft2(direction), it is adjoint(i · Y · grad · Im(conj(Y) · T) / |Y|^3).
    """
    turned = backend.fuse(_turned)(grad, backend.rfft2(direction), spectrum)
    return _adjoint(backend, turned, direction.shape)


# The elementwise bodies (each one fused kernel on the GPU, see `ArrayBackend.fuse`) work with the
# phase P = Y / |Y|, bounded by 1 as torch.sgn, and divide by |Y| at most once, last: grad / |Y|,
# Y · T and |Y|^3 leave the dtype's range where the derivatives do not (a subnormal |Y| is enough).
# On NumPy, where each operation is a pass over the arrays, the usual case takes a shorter way, once
# a check shows that it lost nothing.
def _times_phase(xp, grad, spectrum):
    """grad · P."""
    if xp is np:
        scale = grad / xp.abs(spectrum)
        if _lossless(scale):  # then Y · (grad / |Y|) is as exact as grad · P, and no |Y| is 0
            return spectrum * scale
    real, imag = _phase_parts(xp, spectrum, _nonzero_magnitude(xp, spectrum))
    return grad * real + 1j * (grad * imag)


def _along_phase(xp, transformed, spectrum):
    """Re(conj(P) · T)."""
    if xp is np:
        # A product of Y and T that overflowed or underflowed leaves an Inf, a NaN, a subnormal or a 0
        # (a 0 may be one that lost all its digits); normal values are exact to their last digits.
        dot = (spectrum.conj() * transformed).real
        if _lossless(dot, zeros=False):
            return dot / xp.abs(spectrum)
    real, imag = _phase_parts(xp, spectrum, _nonzero_magnitude(xp, spectrum))
    return real * xp.real(transformed) + imag * xp.imag(transformed)


def _turned(xp, grad, transformed, spectrum):
    """i · P · grad · Im(conj(P) · T) / |Y|."""
    magnitude = _nonzero_magnitude(xp, spectrum)
    real, imag = _phase_parts(xp, spectrum, magnitude)
    turn = grad * (real * xp.imag(transformed) - imag * xp.real(transformed)) / magnitude
    return (1j * real - imag) * turn


def _nonzero_magnitude(xp, spectrum):
    """|Y| with 1 where it is 0: Y itself is 0 there, so every formula gives 0, not 0/0."""
    magnitude = xp.abs(spectrum)
    return magnitude + (magnitude == 0)


def _phase_parts(xp, spectrum, magnitude):
    """Re(P) and Im(P), given |Y| with 1 for 0, each part divided on its own: CuPy divides by a complex
    number through its reciprocal, NaN for |Y| near float32's largest, and NumPy is several times slower."""
    return xp.real(spectrum) / magnitude, xp.imag(spectrum) / magnitude


def _lossless(a, zeros=True):
    """Whether every element of the NumPy array `a` is a normal float, or 0 where `zeros`: no Inf, NaN
    or subnormal."""
    size = np.abs(a)
    finfo = np.finfo(a.dtype)
    smallest = size.min(initial=np.inf)
    if smallest == 0 and zeros:  # zeros are exact: the others decide
        smallest = size.min(initial=np.inf, where=size != 0)
    return finfo.smallest_normal <= smallest and size.max(initial=0) <= finfo.max


def _adjoint(backend, half_spectrum, shape):
    """The adjoint of x -> rfft2(x), for x of `shape`; it scales `half_spectrum`, a temporary, in place.

    The columns that stand for two conjugate bins count half.
    """
    if backend.xp is np:  # NumPy walks a slice row by row: double the edge columns, then halve it all
        edges = slice(None, None, half_spectrum.shape[-1] - 1) if shape[-1] % 2 == 0 else slice(1)
        half_spectrum[..., edges] *= 2  # column 0, and the last where W is even
        half_spectrum *= 0.5
    else:
        half_spectrum[..., 1 : (shape[-1] + 1) // 2] *= 0.5
    return backend.irfft2(half_spectrum, s=shape[-2:], norm="forward")


# ----------------------------------------------------------------------------
# 2. PyTorch plumbing: custom ops for the kernels, and autograd.Functions that tie
#    them together. The Functions are what torch.func (grad, jacrev, jvp) needs.
# ----------------------------------------------------------------------------


# One custom op per kernel, with its fake, vmap rule and autocast (see `kernel_op`). Leading dims
# broadcast; the fakes give each output's shape and dtype without computing it.
def _batch(*tensors: Tensor) -> torch.Size:
    return torch.broadcast_shapes(*(t.shape[:-2] for t in tensors))


def _magnitude_and_spectrum(x: Tensor) -> tuple[Tensor, Tensor]:
    shape = (*x.shape[:-1], x.shape[-1] // 2 + 1)
    computed_in = torch.promote_types(x.dtype, torch.float32)  # float16 and bfloat16 run in float32
    return x.new_empty(shape), x.new_empty(shape, dtype=computed_in.to_complex())


def _image(grad: Tensor, spectrum: Tensor, width: int) -> Tensor:
    return grad.new_empty(*_batch(grad, spectrum), spectrum.shape[-2], width)


def _spectrum_sized(tangent: Tensor, spectrum: Tensor) -> Tensor:
    return tangent.new_empty(*_batch(tangent, spectrum), *spectrum.shape[-2:])


def _direction_sized(grad: Tensor, direction: Tensor, spectrum: Tensor) -> Tensor:
    return direction.new_empty(*_batch(grad, direction, spectrum), *direction.shape[-2:])


bad_fft_forward_op = kernel_op(
    f"{__package__}::bad_fft_forward",
    "(Tensor x) -> (Tensor, Tensor)",
    bad_fft_kernel,
    check=lambda x: check_image("bad_fft", "x", x),
    fake=_magnitude_and_spectrum,
)
bad_fft_backward_op = kernel_op(
    f"{__package__}::bad_fft_backward",
    "(Tensor grad, Tensor spectrum, SymInt width) -> Tensor",
    bad_fft_backward_kernel,
    fake=_image,
)
bad_fft_jvp_op = kernel_op(
    f"{__package__}::bad_fft_jvp",
    "(Tensor tangent, Tensor spectrum) -> Tensor",
    bad_fft_jvp_kernel,
    fake=_spectrum_sized,
)
bad_fft_curvature_op = kernel_op(
    f"{__package__}::bad_fft_curvature",
    "(Tensor grad, Tensor direction, Tensor spectrum) -> Tensor",
    bad_fft_curvature_kernel,
    fake=_direction_sized,
)


# Each derivative is an autograd.Function of its own, so that differentiating it again
# either works (second derivatives, forward or reverse) or fails with a clear error.
# The spectrum Y = rfft2(x) comes from the forward, as native torch keeps it, and saves
# the derivatives an FFT. It is not differentiable: each Function takes x as well, and
# its derivative for x holds what moving x does to Y.
class BadFFTFunction(torch.autograd.Function):
    """|rfft2(x)| (and its spectrum) with its true derivatives: reverse, forward (jvp) and second order."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return bad_fft_forward_op(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,), (magnitude, spectrum) = inputs, output
        ctx.mark_non_differentiable(spectrum)
        ctx.set_materialize_grads(False)  # the spectrum's gradient is None: not a tensor of zeros to make
        # Under autocast the op ran on x in float32; elsewhere this is x itself.
        x = x.to(magnitude.dtype)
        ctx.save_for_backward(x, spectrum)
        ctx.save_for_forward(x, spectrum)

    @staticmethod
    def backward(ctx, grad, _):
        if grad is None:  # an undefined gradient, as gradcheck passes: it stands for zeros
            return None
        x, spectrum = ctx.saved_tensors
        # Only double backward and torch.func need the backward's own Function; it costs ~25 µs.
        if torch.is_grad_enabled():
            return _BadFFTBackward.apply(grad, x, spectrum)
        return bad_fft_backward_op(grad, spectrum, x.shape[-1])

    @staticmethod
    def jvp(ctx, tangent):
        x, spectrum = ctx.saved_tensors
        return _BadFFTJvp.apply(tangent.to(x.dtype), x, spectrum), None


class _BadFFTBackward(torch.autograd.Function):
    """grad_x = backward(grad, Y), linear in grad."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x, spectrum):
        return bad_fft_backward_op(grad, spectrum, x.shape[-1])

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, cotangent):
        grad, x, spectrum = ctx.saved_tensors
        grad_of_grad = _BadFFTJvp.apply(cotangent, x, spectrum) if ctx.needs_input_grad[0] else None
        grad_of_x = _BadFFTCurvature.apply(grad, cotangent, spectrum) if ctx.needs_input_grad[1] else None
        return grad_of_grad, grad_of_x, None

    @staticmethod
    def jvp(ctx, grad_tangent, x_tangent, _):
        grad, x, spectrum = ctx.saved_tensors
        terms = []
        if grad_tangent is not None:
            terms.append(_BadFFTBackward.apply(grad_tangent, x, spectrum))
        if x_tangent is not None:
            terms.append(_BadFFTCurvature.apply(grad, x_tangent, spectrum))
        return sum(terms[1:], terms[0])


class _BadFFTJvp(torch.autograd.Function):
    """tangent_y = jvp(tangent, Y), linear in tangent."""

    generate_vmap_rule = True

    @staticmethod
    def forward(tangent, x, spectrum):
        return bad_fft_jvp_op(tangent, spectrum)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        tangent, x, spectrum = ctx.saved_tensors
        grad_of_tangent = _BadFFTBackward.apply(grad, x, spectrum) if ctx.needs_input_grad[0] else None
        grad_of_x = _BadFFTCurvature.apply(grad, tangent, spectrum) if ctx.needs_input_grad[1] else None
        return grad_of_tangent, grad_of_x, None

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError("bad_fft: forward-over-forward derivatives are not supported; use reverse mode inside")


class _BadFFTCurvature(torch.autograd.Function):
    """The second-derivative term. Differentiating it again would be a third derivative."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, direction, spectrum):
        return bad_fft_curvature_op(grad, direction, spectrum)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("bad_fft: third derivatives are not supported; first and second derivatives are")

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError("bad_fft: third derivatives are not supported; first and second derivatives are")


_apply = function_applier(BadFFTFunction)


def _magnitude(x: Tensor) -> Tensor:
    return _apply(x)[0]


register_public_op(__package__, "bad_fft", "(Tensor x) -> Tensor", _magnitude)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


@public_op
def bad_fft(x: Tensor) -> Tensor:
    """|rfft2(x)| over the last two dims of a float tensor of shape (..., H, W).

    Returns a tensor of shape (..., H, W // 2 + 1) and the dtype of `x`. float16 and
    bfloat16 are computed in float32; under autocast the result is float32.
    """
    check_tensor("bad_fft", "x", x)
    return _magnitude(x)


class BadFFT(nn.Module):
    """`bad_fft` as a parameter-free module, for use in `nn.Sequential`."""

    def forward(self, x: Tensor) -> Tensor:
        return bad_fft(x)
