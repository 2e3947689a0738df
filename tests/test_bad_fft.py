"""bad_fft: the contract every op keeps, declared for this op, and the checks of this op's own design.

`TestContract` declares the op into the contract (torch_scipy_op.testing.OpContract); the tests at the bottom
check choices of this op's design: change or delete those where your op differs.
"""

import pytest
import torch
from torch_scipy_op.testing import OpContract, assert_matches, tolerances

from reference.bad_fft import BadFFT, bad_fft


def native(x):
    return torch.fft.rfft2(x).abs()


class TestContract(OpContract):
    op = staticmethod(bad_fft)
    native = staticmethod(native)
    samples = tuple({"x": shape} for shape in [(3, 4, 6), (8, 8), (7, 9), (6, 5), (1, 1), (1, 6), (5, 1), (2, 3, 5, 4)])
    bad_inputs = (
        ({"x": (5,)}, ValueError, r"x must have at least 2 dims \(..., H, W\), got shape \(5,\)"),
        ({"x": (3, 0)}, ValueError, r"x must have H and W of at least 1, got shape \(3, 0\)"),
        (
            {"x": lambda dtype, device: torch.ones(3, 4, dtype=torch.bool)},
            TypeError,
            "x must be float16, bfloat16, float32 or float64, got torch.bool",
        ),
        (
            {"x": lambda dtype, device: torch.ones(3, 4, dtype=torch.complex64)},
            TypeError,
            "x must be .* got torch.complex64",
        ),
        (
            {"x": lambda dtype, device: torch.eye(3).to_sparse()},
            TypeError,
            r"x must be a dense \(strided\) tensor, got layout torch.sparse_coo",
        ),
    )
    # (batch, size, size) float32 images, from 64x64 to 1024x1024.
    # (batch, size, size) float32 images: the fixed cost per call at the small ones, the math at the large ones.
    benchmark_samples = tuple({"x": (b, s, s)} for b, s in [(1, 32), (1, 64), (8, 128), (8, 256), (1, 1024)])

    @staticmethod
    def module():
        return BadFFT(), (4, 6, 8), lambda module, x: native(x)


# ----------------------------------------------------------------------------
# This op's design: change or delete each test where your op differs.
# ----------------------------------------------------------------------------


def test_zero_spectrum_has_zero_gradient(device):
    """Where |Y| = 0 the gradient is 0, as torch.sgn has it, never NaN."""
    x = torch.zeros(4, 6, dtype=torch.float64, device=device, requires_grad=True)
    bad_fft(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    ones = torch.ones(4, 6, dtype=torch.float64, device=device, requires_grad=True)
    assert_matches(bad_fft, native, ones)


def test_module():
    model = torch.nn.Sequential(BadFFT(), torch.nn.Flatten(), torch.nn.Linear(4 * 3, 2))
    assert model(torch.randn(5, 4, 4)).shape == (5, 2)
    assert list(BadFFT().parameters()) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_inf_and_nan_give_native_pattern(value, dtype, device):
    x = torch.randn(3, 5, 6, dtype=dtype, device=device)
    x[1, 2, 3] = float(value)
    torch.testing.assert_close(bad_fft(x), native(x), equal_nan=True)


@pytest.mark.parametrize("values", [("inf", "inf"), ("inf", "-inf")])
def test_several_infs_make_their_image_non_finite_as_native(values, device):
    """Which bins are Inf and which NaN then depends on the FFT library's order of operations."""
    x = torch.randn(3, 5, 6, dtype=torch.float64, device=device)
    x[1, 2, 3], x[1, 4, 0] = map(float, values)
    ours, theirs = bad_fft(x), native(x)
    assert not ours[1].isfinite().any()
    assert not theirs[1].isfinite().any()
    torch.testing.assert_close(ours[[0, 2]], theirs[[0, 2]])


# Derivatives at scales where a formula that divides by |Y| early (grad / |Y|, Y · T / |Y|, 1 / |Y|**3)
# leaves the dtype's range although the derivative fits it.


def float64_native(fn, *tensors):
    """`fn` on float64 copies of `tensors` (exact), back in their dtype: native's value, without its
    own float32 intermediates (on the CPU, native's float32 gradient is NaN at a subnormal scale)."""
    dtype = tensors[0].dtype
    result = fn(*(t.detach().double() for t in tensors))
    return tuple(r.to(dtype) for r in result) if isinstance(result, tuple) else result.to(dtype)


def assert_close_to_scale(ours, expected, x_scale):
    """Finite, and within the dtype's tolerance relative to the tensor's largest value.

    A subnormal x is held to the smallest subnormal, a coarser grid: the FFT rounds to it, and a bin
    where |Y| is small loses the most. Errors of a thousand steps of it, relative to x's scale, pass.
    """
    assert expected.isfinite().all()  # the case is meaningful: the derivative fits the dtype
    assert ours.isfinite().all()
    finfo = torch.finfo(ours.dtype)
    tolerance = max(tolerances(ours.dtype)["rtol"], 1000 * finfo.tiny * finfo.eps / x_scale)
    torch.testing.assert_close(ours, expected, rtol=tolerance, atol=tolerance * expected.abs().max().item())


def skip_float32_subnormals_on_cuda(device, dtype, scale):
    if device == "cuda" and dtype == torch.float32 and scale < torch.finfo(dtype).tiny:
        pytest.skip("CuPy compiles its kernels with -ftz=true: they read float32 subnormals as 0")


# (dtype, scale of x, scale of the incoming gradient): grad / |Y| would overflow (a subnormal |Y|, a
# large gradient) or lose digits as a subnormal (a small gradient on a huge |Y|).
EXTREME_GRADIENTS = [
    (torch.float32, 1e-40, 1.0),
    (torch.float32, 1e-30, 1e10),
    (torch.float32, 1e30, 1e-12),
    (torch.float64, 1e-310, 1.0),
    (torch.float64, 1e300, 1e-20),
]


@pytest.mark.parametrize(("dtype", "scale", "grad_scale"), EXTREME_GRADIENTS)
def test_gradient_at_extreme_scales(dtype, scale, grad_scale, device):
    """grad · Y / |Y| with the phase Y / |Y| first, bounded by 1 as torch.sgn."""
    skip_float32_subnormals_on_cuda(device, dtype, scale)
    x = torch.randn(2, 6, 7, dtype=dtype, device=device) * scale
    grad = torch.randn(2, 6, 4, dtype=dtype, device=device) * grad_scale
    grad[0, 0, 0] = 0  # exact, and no excuse for the others

    def gradient(op):
        return lambda x, grad: torch.autograd.grad(op(x.requires_grad_()), x, grad)[0]

    ours = gradient(bad_fft)(x.clone(), grad)
    assert_close_to_scale(ours, float64_native(gradient(native), x, grad), scale)


@pytest.mark.parametrize(("scale", "tangent_scale"), [(1e-15, 1e-30), (1e-40, 1e-5), (1e30, 1e10)])
def test_jvp_at_extreme_scales(scale, tangent_scale, device):
    """Re(conj(Y / |Y|) · rfft2(t)), float32: Y · rfft2(t) would underflow or overflow."""
    skip_float32_subnormals_on_cuda(device, torch.float32, scale)
    x = torch.randn(2, 6, 7, device=device) * scale
    tangent = torch.randn(2, 6, 7, device=device) * tangent_scale
    ours = torch.func.jvp(bad_fft, (x,), (tangent,))[1]
    expected = float64_native(lambda x, t: torch.func.jvp(native, (x,), (t,))[1], x, tangent)
    assert_close_to_scale(ours, expected, scale)


# float32 scales of x where the second derivative's 1 / |Y|**3 would underflow or overflow.
SECOND_ORDER_SCALES = [1e-15, 1e-20, 1e30]


@pytest.mark.parametrize("scale", SECOND_ORDER_SCALES)
def test_hessian_at_extreme_scales(scale, device):
    """Forward over reverse: the one division by |Y| comes last."""
    x = torch.randn(4, 5, device=device) * scale
    weights = torch.randn(4, 3, device=device)

    def hessian(op):
        return lambda x, weights: torch.func.hessian(lambda x: (op(x) * weights).sum())(x)

    ours = hessian(bad_fft)(x, weights)
    assert_close_to_scale(ours, float64_native(hessian(native), x, weights), scale)


@pytest.mark.parametrize(("scale", "grad_scale"), [*((s, 1.0) for s in SECOND_ORDER_SCALES), (1e-40, 1e-10)])
def test_double_backward_at_extreme_scales(scale, grad_scale, device):
    """Reverse over reverse, for x and for the gradient. The second derivative is about
    grad · cotangent / |Y|: at a subnormal scale, small ones keep it in float32's range."""
    skip_float32_subnormals_on_cuda(device, torch.float32, scale)
    x = torch.randn(2, 6, 7, device=device) * scale
    grad = torch.randn(2, 6, 4, device=device) * grad_scale
    cotangent = torch.randn(2, 6, 7, device=device) * grad_scale

    def second(op):
        def derivatives(x, grad, cotangent):
            x, grad = x.requires_grad_(), grad.requires_grad_()
            (gradient,) = torch.autograd.grad(op(x), x, grad, create_graph=True)
            return torch.autograd.grad(gradient, (x, grad), cotangent)

        return derivatives

    ours = second(bad_fft)(x.clone(), grad.clone(), cotangent)
    for ours_one, expected in zip(ours, float64_native(second(native), x, grad, cotangent), strict=True):
        assert_close_to_scale(ours_one, expected, scale)
