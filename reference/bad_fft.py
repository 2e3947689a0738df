"""BadFFT: the magnitude of the 2-D real FFT, y = |rfft2(x)|, as a differentiable op.

The original "Creating extensions using numpy and scipy" tutorial used
`irfft2(grad_output)` as the backward. That is not the gradient: gradcheck fails
on it, and it crashes for odd widths. The gradient is

```
G      = grad · Y / |Y|   (0 where |Y| = 0, like torch.sgn)
grad_x = irfft2(G · c, s=(H, W), norm="forward")
```

where c is 1 on column 0 (and on the last column when W is even) and 1/2 on the
others, whose conjugate twins rfft2 leaves out. The forward-mode derivative in a
direction t is Re(conj(Y) · rfft2(t)) / |Y|, and the second derivative has a
kernel of its own, so jvp, double backward and hessians work too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, check_image, declare_op

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
# ----------------------------------------------------------------------------


def bad_fft_kernel(backend: ArrayBackend, x):
    """|rfft2(x)| over the last two dims, and the spectrum Y = rfft2(x), which the derivatives use."""
    xp = backend.xp
    spectrum = backend.rfft2(x)
    magnitude = xp.abs(spectrum, out=backend.empty(spectrum.shape, x.dtype))  # the output's memory: no copy
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


def bad_fft_backward_kernel(backend: ArrayBackend, grad, x, spectrum):
    """The gradient of |rfft2(x)| with respect to x, given the output's gradient and Y."""
    shape = (spectrum.shape[-2], x.shape[-1])
    return _adjoint(backend, backend.fuse(_times_phase)(grad, spectrum), shape)


def bad_fft_jvp_kernel(backend: ArrayBackend, x_tangent, spectrum):
    """The forward derivative of |rfft2(x)| in the direction `x_tangent`: Re(conj(Y) · rfft2(x_tangent)) / |Y|."""
    return backend.fuse(_along_phase)(backend.rfft2(x_tangent), spectrum)


def bad_fft_curvature_kernel(backend: ArrayBackend, grad, x_direction, spectrum):
    """How the gradient moves when x moves in `x_direction`: the second derivative, symmetric in both.

    With T = rfft2(x_direction), it is adjoint(i · Y · grad · Im(conj(Y) · T) / |Y|^3).
    """
    turned = backend.fuse(_turned)(grad, backend.rfft2(x_direction), spectrum)
    return _adjoint(backend, turned, x_direction.shape)


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
    return backend.irfft2(half_spectrum, s=shape[-2:], norm="forward", as_result=True)  # the gradient: no copy


# ----------------------------------------------------------------------------
# 2. The declaration. The spectrum Y = rfft2(x) comes from the forward, as native
#    torch keeps it, and saves the derivatives an FFT.
# ----------------------------------------------------------------------------


def _magnitude_and_spectrum(x: Tensor) -> tuple[Tensor, Tensor]:
    """The fake: |Y| in x's dtype and Y in the complex dtype it is computed in, without computing them."""
    shape = (*x.shape[:-1], x.shape[-1] // 2 + 1)
    computed_in = torch.promote_types(x.dtype, torch.float32)  # float16 and bfloat16 run in float32
    return x.new_empty(shape), x.new_empty(shape, dtype=computed_in.to_complex())


bad_fft_declared = declare_op(
    f"{__package__}::bad_fft",
    "(Tensor x) -> Tensor",
    forward=bad_fft_kernel,
    backward=bad_fft_backward_kernel,
    jvp=bad_fft_jvp_kernel,
    curvature=bad_fft_curvature_kernel,
    saved=("spectrum",),
    batched=True,
    check=lambda x: check_image("bad_fft", "x", x),
    fake=_magnitude_and_spectrum,
)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


@bad_fft_declared.public
def bad_fft(x: Tensor) -> Tensor:
    """|rfft2(x)| over the last two dims of a float tensor of shape (..., H, W).

    Returns a tensor of shape (..., H, W // 2 + 1) and the dtype of `x`. float16 and
    bfloat16 are computed in float32; under autocast they give float32, and float64
    stays float64.
    """
    return bad_fft_declared(x)


class BadFFT(nn.Module):
    """`bad_fft` as a parameter-free module, for use in `nn.Sequential`."""

    def forward(self, x: Tensor) -> Tensor:
        return bad_fft(x)
