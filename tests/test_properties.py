"""Property tests: every starter against native torch over random shapes, strides and dtypes.

Values in every dtype; reverse and forward derivatives in float64, where the comparison
is exact enough to hold for any draw (in float32, |rfft2|'s gradient Y/|Y| is as
uncertain as the phase of a bin near 0).
"""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.bad_fft import bad_fft
from reference.minimal_op import minimal_op
from reference.my_op import my_op
from reference.scipy_conv2d import scipy_conv2d

PROPERTY = settings(max_examples=120, deadline=None, derandomize=True)
TOLERANCE = {
    torch.float64: {"rtol": 1e-9, "atol": 1e-9},
    torch.float32: {"rtol": 1e-4, "atol": 1e-4},
    torch.bfloat16: {"rtol": 2e-2, "atol": 5e-2},
    torch.float16: {"rtol": 1e-2, "atol": 2e-2},
}


def native_conv2d(input, weight):
    images = input.reshape(-1, 1, *input.shape[-2:])
    out = F.conv2d(images, weight[None, None])
    return out.reshape(*input.shape[:-2], *out.shape[-2:])


def native_bad_fft(x):
    return torch.fft.rfft2(x).abs()


def native_my_op(x, weight, frequency):
    return weight * torch.sin(frequency * x)


def in_dtype(native, dtype, *inputs):
    """Native's result for inputs in `dtype`: half precision is computed in float32, as the ops do."""
    if dtype in (torch.float16, torch.bfloat16):
        inputs = [t.float() if isinstance(t, torch.Tensor) else t for t in inputs]
    return native(*inputs).to(dtype)


@st.composite
def images(draw, min_height=1, min_width=1):
    """A tensor of shape (..., H, W) in some dtype, contiguous, transposed, strided or expanded."""
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    height, width = draw(st.integers(min_height, 12)), draw(st.integers(min_width, 12))
    dtype = draw(st.sampled_from(list(TOLERANCE)))
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided", "expanded"]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    if layout == "transposed":
        x = torch.randn(*batch, width, height, generator=generator, dtype=torch.float64).transpose(-1, -2)
    elif layout == "strided":
        x = torch.randn(*batch, 2 * height, 2 * width, generator=generator, dtype=torch.float64)[..., ::2, 1::2]
    elif layout == "expanded":
        x = torch.randn(1, height, width, generator=generator, dtype=torch.float64).expand(2, -1, -1)
    else:
        x = torch.randn(*batch, height, width, generator=generator, dtype=torch.float64)
    return x.to(dtype) if dtype != torch.float64 else x


def assert_derivatives_match(op, native, *inputs):
    """Reverse (vjp) and forward (jvp) derivatives against native's, for float64 inputs."""
    inputs = tuple(t.detach() for t in inputs)
    # torch.func.jvp refuses an expanded primal, for native ops too ("more than one element of the
    # written-to tensor refers to a single memory location"), so forward mode gets a contiguous copy.
    primals = tuple(t.contiguous() for t in inputs)
    tangents = tuple(torch.randn_like(t) for t in primals)
    torch.testing.assert_close(torch.func.jvp(op, primals, tangents), torch.func.jvp(native, primals, tangents))
    _, vjp = torch.func.vjp(op, *inputs)
    expected, native_vjp = torch.func.vjp(native, *inputs)
    cotangent = torch.randn_like(expected)
    torch.testing.assert_close(vjp(cotangent), native_vjp(cotangent))


@PROPERTY
@given(x=images())
def test_bad_fft_matches_native(x):
    torch.testing.assert_close(bad_fft(x), in_dtype(native_bad_fft, x.dtype, x), **TOLERANCE[x.dtype])
    if x.dtype == torch.float64:
        assert_derivatives_match(bad_fft, native_bad_fft, x)


@PROPERTY
@given(x=images())
def test_minimal_op_matches_native(x):
    torch.testing.assert_close(minimal_op(x), in_dtype(torch.special.erf, x.dtype, x), **TOLERANCE[x.dtype])
    if x.dtype == torch.float64:
        assert_derivatives_match(minimal_op, torch.special.erf, x)


@PROPERTY
@given(x=images(), data=st.data())
def test_my_op_matches_native(x, data):
    """A weight whose shape is a suffix of x's, with some dims 1, and a frequency: all broadcast."""
    suffix = data.draw(st.integers(0, x.dim()))
    shape = [data.draw(st.sampled_from([1, n])) for n in x.shape[x.dim() - suffix :]]
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)), dtype=torch.float64).to(x.dtype)
    frequency = data.draw(st.floats(-3, 3))
    expected = in_dtype(native_my_op, x.dtype, x, weight, frequency)
    torch.testing.assert_close(my_op(x, weight, frequency), expected, **TOLERANCE[x.dtype])
    if x.dtype == torch.float64:
        assert_derivatives_match(
            lambda x, w: my_op(x, w, frequency), lambda x, w: native_my_op(x, w, frequency), x, weight
        )


@PROPERTY
@given(x=images(), data=st.data())
def test_conv2d_matches_native(x, data):
    kh, kw = data.draw(st.integers(1, x.shape[-2])), data.draw(st.integers(1, x.shape[-1]))
    weight = torch.randn(kh, kw, generator=torch.Generator().manual_seed(kh * 31 + kw), dtype=torch.float64)
    weight = weight.to(x.dtype)
    expected = in_dtype(native_conv2d, x.dtype, x, weight)
    # Half-precision inputs are rounded before the sum; scale the tolerance with the kernel's size.
    tolerance = {key: value * (kh * kw) ** 0.5 for key, value in TOLERANCE[x.dtype].items()}
    torch.testing.assert_close(scipy_conv2d(x, weight), expected, **tolerance)
    if x.dtype == torch.float64:
        assert_derivatives_match(scipy_conv2d, native_conv2d, x, weight)
