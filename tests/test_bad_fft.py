"""bad_fft: values and gradients against native torch, and every way a PyTorch user calls it.

The tests above the marked part at the bottom are the contract that every op keeps; the
marked part checks choices of this op's design: change or delete those where your op differs.
"""

import pytest
import torch
from conftest import (
    SHARDINGS,
    assert_compiled_forward_mode_matches_native,
    assert_matches,
    assert_seen_as_a_torch_function,
    assert_stays_on_gpu,
    assert_trains_like_native,
    compiled_refusals,
    needs_cuda,
    needs_cupy,
    randn,
    round_trip,
    tolerances,
)

from reference import BadFFT, bad_fft


def native(x):
    return torch.fft.rfft2(x).abs()


SHAPES = [(8, 8), (7, 9), (6, 5), (1, 1), (1, 6), (5, 1), (3, 4, 6), (2, 3, 5, 4)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_values_and_gradient_match_native(shape, dtype, device):
    assert_matches(bad_fft, native, randn(*shape, dtype=dtype, device=device), **tolerances(dtype))


def test_keeps_dtype_and_shape(device):
    for dtype in (torch.float32, torch.float64):
        x = randn(2, 7, 9, dtype=dtype, device=device)
        y = bad_fft(x)
        assert (y.dtype, y.shape, y.device.type) == (dtype, (2, 7, 5), device)
        y.sum().backward()
        assert x.grad.dtype == dtype


@pytest.mark.parametrize("view", ["transpose", "step", "expand"])
def test_non_contiguous_input(view, device):
    base = randn(4, 10, 12, device=device)
    x = {"transpose": base.transpose(-1, -2), "step": base[:, ::2, 1::3], "expand": base[:1].expand(3, -1, -1)}[view]
    assert not x.is_contiguous()
    assert_matches(bad_fft, native, x, **tolerances(x.dtype))


@pytest.mark.parametrize("shape", [(6, 8), (5, 7), (2, 3, 4)])
def test_gradcheck_and_gradgradcheck(shape, device):
    x = randn(*shape, device=device)
    assert torch.autograd.gradcheck(bad_fft, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(bad_fft, (x,), check_fwd_over_rev=True, check_rev_over_rev=True)


def test_forward_mode_matches_native(device):
    x, tangent = torch.randn(2, 5, 6, dtype=torch.float64, device=device), torch.randn(2, 5, 6, dtype=torch.float64)
    tangent = tangent.to(device)
    torch.testing.assert_close(torch.func.jvp(bad_fft, (x,), (tangent,)), torch.func.jvp(native, (x,), (tangent,)))
    torch.testing.assert_close(torch.func.jacfwd(bad_fft)(x[0]), torch.func.jacfwd(native)(x[0]))
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, tangent)
        ours = torch.autograd.forward_ad.unpack_dual(bad_fft(dual)).tangent
        theirs = torch.autograd.forward_ad.unpack_dual(native(dual)).tangent
    torch.testing.assert_close(ours, theirs)


def test_second_derivatives_match_native(device):
    """Reverse over reverse and forward over reverse, where |Y| > 0 (random input: everywhere)."""
    x = torch.randn(4, 5, dtype=torch.float64, device=device)
    weights = torch.randn(4, 3, dtype=torch.float64, device=device)

    def loss(fn):
        return lambda x: (fn(x) * weights).sum()

    torch.testing.assert_close(torch.func.hessian(loss(bad_fft))(x), torch.func.hessian(loss(native))(x))
    rev_rev = torch.func.jacrev(torch.func.jacrev(loss(bad_fft)))(x)
    torch.testing.assert_close(rev_rev, torch.func.jacrev(torch.func.jacrev(loss(native)))(x))
    rev_fwd = torch.func.jacrev(torch.func.jacfwd(loss(bad_fft)))(x)
    torch.testing.assert_close(rev_fwd, torch.func.hessian(loss(native))(x))


def test_output_owns_its_memory(device):
    x = randn(4, 6, device=device)
    y = bad_fft(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    pointers = {t.untyped_storage().data_ptr() for t in (x, y, grad)}
    assert len(pointers) == 3


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad, device):
    x = torch.randn(3, 5, 6, device=device, requires_grad=requires_grad)
    torch.library.opcheck(torch.ops.reference.bad_fft, (x,))
    torch.library.opcheck(torch.ops.reference.bad_fft_forward, (x.detach(),))


def test_opcheck_derivative_ops(device):
    """The derivative ops are checked on plain tensors; their Functions differentiate them."""
    x, direction = torch.randn(3, 5, 6, device=device), torch.randn(3, 5, 6, device=device)
    grad, spectrum = torch.randn(3, 5, 4, device=device), torch.fft.rfft2(x)
    # Each takes the leading tensors, the state (x and the saved spectrum) and the shapes it gives.
    torch.library.opcheck(torch.ops.reference.bad_fft_backward, (grad, x, spectrum, [3, 5, 6]))
    torch.library.opcheck(torch.ops.reference.bad_fft_jvp, (direction, x, spectrum, [3, 5, 4]))
    torch.library.opcheck(torch.ops.reference.bad_fft_curvature, (grad, direction, x, spectrum, [3, 5, 6]))


def test_torch_ops_path_matches_the_function(device):
    """torch.ops.reference.bad_fft: values and derivatives, reverse and forward, eager and compiled."""
    op = torch.ops.reference.bad_fft
    assert_matches(op, native, randn(5, 6, device=device))
    compiled = torch.compile(lambda x: op(x) * 2, fullgraph=True)
    assert_matches(compiled, lambda x: native(x) * 2, randn(5, 6, device=device))
    x, tangent = torch.randn(5, 6, dtype=torch.float64, device=device), torch.randn(5, 6, dtype=torch.float64)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, tangent.to(device))
        ours = torch.autograd.forward_ad.unpack_dual(op(dual)).tangent
        theirs = torch.autograd.forward_ad.unpack_dual(native(dual)).tangent
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("transform", [torch.func.grad, torch.func.jacrev, torch.func.jacfwd])
def test_torch_ops_path_refuses_torch_func_derivatives(transform, device):
    """Never the zero tangents of a custom op's autograd: a clear error that names the public function.

    vmap alone works: torch runs the op once per sample.
    """
    x = torch.randn(3, 5, 6, dtype=torch.float64, device=device)
    torch.testing.assert_close(torch.func.vmap(torch.ops.reference.bad_fft)(x), native(x))
    with pytest.raises(RuntimeError, match=r"does not run under torch.func transforms .* call reference.bad_fft"):
        transform(lambda x: torch.ops.reference.bad_fft(x).sum())(x)


def test_export(device):
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), BadFFT()).to(device)
    x = torch.randn(2, 6, 8, device=device)
    exported = torch.export.export(model, (x,)).module()
    torch.testing.assert_close(exported(x), native(model[0](x)))


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compile_fullgraph(mode, device):
    """Also with CUDA graphs ("reduce-overhead"), which leave out the op: it is tagged cudagraph_unsafe."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), BadFFT()).to(device)
    compiled = torch.compile(model, fullgraph=True, mode=mode)
    x = torch.randn(2, 6, 8, device=device)
    expected = model(x)
    torch.testing.assert_close(compiled(x), expected)
    grads = torch.autograd.grad(compiled(x).sum(), list(model.parameters()))
    torch.testing.assert_close(grads, torch.autograd.grad(expected.sum(), list(model.parameters())))


def test_vmap(device):
    x = torch.randn(5, 3, 6, 7, device=device, dtype=torch.float64)
    for in_dims in (0, 1, 3):
        moved = x.movedim(0, in_dims)
        torch.testing.assert_close(torch.func.vmap(bad_fft, in_dims=in_dims)(moved), native(x))


def test_func_grad_and_jacrev(device):
    x = torch.randn(4, 5, dtype=torch.float64, device=device)
    grad = torch.func.grad(lambda x: bad_fft(x).sum())(x)
    torch.testing.assert_close(grad, torch.func.grad(lambda x: native(x).sum())(x))
    torch.testing.assert_close(torch.func.jacrev(bad_fft)(x), torch.func.jacrev(native)(x))
    per_sample = torch.func.vmap(torch.func.grad(lambda x: bad_fft(x).pow(2).sum()))(x[None].expand(3, -1, -1))
    torch.testing.assert_close(per_sample[1], torch.func.grad(lambda x: native(x).pow(2).sum())(x))


BAD_INPUT = [
    (torch.ones(5), ValueError, r"x must have at least 2 dims \(..., H, W\), got shape \(5,\)"),
    (torch.ones(3, 0), ValueError, r"x must have H and W of at least 1, got shape \(3, 0\)"),
    (
        torch.ones(3, 4, dtype=torch.int64),
        TypeError,
        "x must be float16, bfloat16, float32 or float64, got torch.int64",
    ),
    (torch.ones(3, 4, dtype=torch.bool), TypeError, "x must be float16, bfloat16, float32 or float64, got torch.bool"),
    (torch.ones(3, 4, dtype=torch.complex64), TypeError, "x must be .* got torch.complex64"),
]


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        *BAD_INPUT,
        ([[1.0]], TypeError, "x must be a torch.Tensor, got list"),
        (torch.eye(3).to_sparse(), TypeError, r"x must be a dense \(strided\) tensor, got layout torch.sparse_coo"),
    ],
)
def test_bad_input(x, error, message):
    with pytest.raises(error, match=f"^bad_fft: {message}"):
        bad_fft(x)


@pytest.mark.parametrize(("x", "error", "message"), BAD_INPUT)
def test_every_path_refuses_bad_input_alike(x, error, message):
    """torch.ops, eager and compiled, checks what the public function checks: the same declared op."""
    with pytest.raises(error, match=f"^bad_fft: {message}"):
        torch.ops.reference.bad_fft(x)
    with pytest.raises(compiled_refusals(), match=f"bad_fft: {message}"):
        torch.compile(torch.ops.reference.bad_fft, fullgraph=True, dynamic=False)(x)


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_trains_under_ddp_and_fsdp_as_native(sharding, process_group):
    """FSDP frees each parameter's storage after the forward (resize_(0)): the op must leave it resizable."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), BadFFT())
    assert_trains_like_native(model, lambda module, x: native(x), torch.randn(4, 6, 8), sharding)


def test_compiled_forward_mode_gives_native_values_or_a_clear_error(device):
    x = torch.randn(2, 5, 6, dtype=torch.float64, device=device)
    refusal = "bad_fft_forward got a forward-mode tangent .* outside torch.compile"
    assert_compiled_forward_mode_matches_native(bad_fft, native, x, refusal)


def test_traces_scripts_and_defers_to_tensor_likes_as_torch_functions_do():
    assert_seen_as_a_torch_function(torch.nn.Sequential(torch.nn.Linear(6, 6), BadFFT()), bad_fft, torch.randn(4, 6))


def test_meta_device_gives_shapes_without_computing():
    x = torch.empty(2, 5, 6, device="meta", requires_grad=True)
    y = BadFFT()(x)
    assert (y.device.type, y.shape) == ("meta", (2, 5, 4))
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert (grad.device.type, grad.shape) == ("meta", x.shape)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype, device):
    x = torch.randn(3, 8, 6, device=device).to(dtype).requires_grad_()
    assert_matches(bad_fft, lambda x: native(x.float()).to(dtype), x)
    compiled = torch.compile(lambda x: torch.ops.reference.bad_fft(x) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(x), bad_fft(x) * 2)


def test_autocast_runs_in_float32(device):
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), BadFFT()).to(device)
    x = torch.randn(4, 5, 6, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.float32  # as native rfft2, an op that autocast runs in float32
    torch.testing.assert_close(y, native(model[0](x)), rtol=2e-2, atol=5e-2)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


def test_empty_batch(device):
    """As native's shapes (native rfft2 itself fails on an empty batch on some builds: an MKL error)."""
    x = randn(3, 0, 8, 6, device=device)
    y = bad_fft(x)
    assert y.shape == (3, 0, 8, 4)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.shape == x.shape
    torch.library.opcheck(torch.ops.reference.bad_fft, (torch.randn(0, 5, 6, device=device, requires_grad=True),))


@pytest.mark.cuda
@needs_cuda
def test_cuda_round_trip_matches_native():
    with round_trip():
        assert_matches(bad_fft, native, randn(3, 6, 7, device="cuda"))


@pytest.mark.cuda
@needs_cuda
@needs_cupy
def test_cuda_tensors_never_leave_the_gpu():
    x = randn(2, 16, 16, device="cuda")

    def step():
        bad_fft(x).sum().backward()

    assert_stays_on_gpu(step)


# ----------------------------------------------------------------------------
# This op's design: change or delete each test where your op differs.
# ----------------------------------------------------------------------------


def test_zero_spectrum_has_zero_gradient(device):
    """Where |Y| = 0 the gradient is 0, as torch.sgn has it, never NaN."""
    x = torch.zeros(4, 6, dtype=torch.float64, device=device, requires_grad=True)
    bad_fft(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert_matches(bad_fft, native, torch.ones(4, 6, dtype=torch.float64, device=device, requires_grad=True))


def test_third_derivatives_raise_a_clear_error(device):
    x = randn(4, 6, device=device)
    (grad,) = torch.autograd.grad(bad_fft(x).pow(2).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="bad_fft: third derivatives are not supported"):
        second.sum().backward()


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
    assert not ours[1].isfinite().any() and not theirs[1].isfinite().any()
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

    assert_close_to_scale(gradient(bad_fft)(x.clone(), grad), float64_native(gradient(native), x, grad), scale)


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

    assert_close_to_scale(hessian(bad_fft)(x, weights), float64_native(hessian(native), x, weights), scale)


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
