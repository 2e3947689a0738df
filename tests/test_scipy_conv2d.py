"""scipy_conv2d: the contract every op keeps, declared for this op, and the checks of this op's own design.

`TestContract` declares the op into the contract (torch_scipy_op.testing.OpContract); the tests at the bottom
check choices of this op's design: change or delete those where your op differs.
"""

import collections
import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torch_scipy_op import NUMPY
from torch_scipy_op.testing import OpContract, assert_matches, randn, tolerances

from reference.scipy_conv2d import ScipyConv2d, scipy_conv2d

# The op's module: the package's `scipy_conv2d` is the function.
op_module = importlib.import_module("reference.scipy_conv2d")


def native(input, weight, bias=None):
    images = input.reshape(-1, 1, *input.shape[-2:])
    out = F.conv2d(images, weight[None, None], None if bias is None else bias.reshape(1))
    return out.reshape(*input.shape[:-2], *out.shape[-2:])


# (input shape, kernel shape): where kernel taps or outputs are few, the fewer of them picks shifted
# multiply-adds (taps) or per-output dot products (outputs); the rest take FFT correlation. "Few" is
# `_MAX_DIRECT_TERMS`: 49 on NumPy, 16 on CuPy.


CASES = [
    ((8, 8), (3, 3)),
    ((7, 9), (2, 4)),
    ((6, 5), (1, 1)),
    ((8, 7), (8, 7)),
    ((9, 8), (8, 7)),
    ((1, 6), (1, 3)),
    ((6, 1), (4, 1)),
    ((12, 11), (5, 6)),
    ((3, 10, 9), (4, 5)),
    ((2, 3, 13, 12), (6, 5)),
    ((17, 16), (8, 9)),
    ((2, 3, 18, 17), (8, 7)),
]

F64 = torch.float64


BENCHMARK_GRID = (
    (1, 32, 3),
    (1, 128, 3),
    (1, 256, 3),
    (1, 256, 15),
    (1, 512, 31),
    (8, 128, 7),
    (32, 128, 5),
    (8, 256, 3),
)


class TestContract(OpContract):
    op = staticmethod(scipy_conv2d)
    native = staticmethod(native)
    samples = (
        {"input": (3, 10, 9), "weight": (4, 5), "bias": (1,)},
        *({"input": shape, "weight": kernel} for shape, kernel in CASES),
        {"input": (2, 7, 6), "weight": (3, 2), "bias": ()},
    )
    bad_inputs = (
        (
            {"input": (5,), "weight": (2, 2)},
            ValueError,
            r"input must have at least 2 dims \(..., H, W\), got shape \(5,\)",
        ),
        ({"input": (0, 4), "weight": (2, 2)}, ValueError, r"input must have H and W of at least 1, got shape \(0, 4\)"),
        (
            {"input": lambda dtype, device: torch.ones(4, 4, dtype=torch.bool), "weight": (2, 2)},
            TypeError,
            "input must be float16, bfloat16, float32 or",
        ),
        (
            {"input": lambda dtype, device: torch.ones(4, 4, dtype=torch.complex64), "weight": (2, 2)},
            TypeError,
            "input must be .* got torch.complex64",
        ),
        (
            {"input": (4, 4), "weight": (0, 2)},
            ValueError,
            r"weight must have H and W of at least 1, got shape \(0, 2\)",
        ),
        ({"input": (4, 4), "weight": (5, 2)}, ValueError, r"weight of shape \(5, 2\) is larger than the input's"),
        ({"input": (4, 4), "weight": (3,)}, ValueError, r"weight must be 2-D \(kH, kW\), got shape \(3,\)"),
        ({"input": (4, 4), "weight": (1, 2, 2)}, ValueError, r"weight must be 2-D \(kH, kW\), got shape \(1, 2, 2\)"),
        ({"input": (4, 4), "weight": (2, 2), "bias": (2,)}, ValueError, r"bias must hold one element .* \(2,\)"),
        ({"input": (4, 4), "weight": (2, 2), "bias": (1, 1, 1)}, ValueError, r"bias must hold one element .*"),
        (
            {"input": (4, 4), "weight": lambda dtype, device: torch.ones(2, 2, device="meta")},
            ValueError,
            "weight must be on the input's device cpu",
        ),
        (
            {"input": lambda dtype, device: torch.eye(4).to_sparse(), "weight": (2, 2)},
            TypeError,
            r"input must be a dense \(strided\) tensor, got",
        ),
    )
    # (batch, size, kernel): float32 images size x size, a kernel x kernel weight and a bias.
    benchmark_samples = tuple({"input": (b, s, s), "weight": (k, k), "bias": (1,)} for b, s, k in BENCHMARK_GRID)

    @staticmethod
    def module():
        return ScipyConv2d(3, 3), (4, 6, 8), lambda module, x: native(x, module.weight, module.bias)


# ----------------------------------------------------------------------------
# This op's design: change or delete each test where your op differs.
# ----------------------------------------------------------------------------


def test_bias_under_torch_func(device):
    """The bias is added inside the Function: vmapped, and differentiated alone, reverse and forward."""
    input, weight = torch.randn(2, 7, 6, dtype=F64, device=device), torch.randn(3, 2, dtype=F64, device=device)
    biases = torch.randn(4, 1, dtype=F64, device=device)
    torch.testing.assert_close(
        torch.func.vmap(scipy_conv2d, in_dims=(None, None, 0))(input, weight, biases),
        torch.stack([native(input, weight, bias) for bias in biases]),
    )

    def by_bias(op):
        return lambda bias: op(input, weight, bias)

    tangent = torch.randn(1, dtype=F64, device=device)
    ours = torch.func.jvp(by_bias(scipy_conv2d), (biases[0],), (tangent,))
    torch.testing.assert_close(ours, torch.func.jvp(by_bias(native), (biases[0],), (tangent,)))
    for transform in (torch.func.jacrev, torch.func.jacfwd):
        ours = transform(by_bias(scipy_conv2d))(biases[0])
        torch.testing.assert_close(ours, transform(by_bias(native))(biases[0]))


def test_meta_device_and_deferred_init():
    """As native: shapes without computation on the meta device, forward and backward; then materialised."""
    module = ScipyConv2d(3, 2, device="meta")
    input = torch.empty(2, 6, 7, device="meta", requires_grad=True)
    output = module(input)
    assert output.device.type == "meta"
    assert output.shape == native(input, module.weight, module.bias).shape
    parameters = (input, module.weight, module.bias)
    grads = torch.autograd.grad(output.sum(), parameters, create_graph=True)
    assert [(g.device.type, g.shape) for g in grads] == [("meta", p.shape) for p in parameters]
    (second,) = torch.autograd.grad(grads[1].sum(), input)
    assert second.device.type == "meta"
    assert second.shape == input.shape
    assert torch.ops.reference.scipy_conv2d(input, module.weight).shape == output.shape
    module.to_empty(device="cpu")
    module.reset_parameters()
    assert module.weight.abs().max() <= 1 / 6**0.5
    assert module.bias.abs().max() <= 1 / 6**0.5
    input = torch.randn(2, 6, 7, requires_grad=True)
    assert_matches(module, lambda x: native(x, module.weight, module.bias), input)


@pytest.mark.parametrize("bias_shape", [(), (1,), (1, 1)])
def test_bias_shapes(bias_shape, device):
    input, weight, bias = randn(2, 6, 7, device=device), randn(3, 2, device=device), randn(*bias_shape, device=device)
    y = scipy_conv2d(input, weight, bias)
    assert y.shape == (2, 4, 6)
    assert_matches(scipy_conv2d, native, input, weight, bias)


def test_module():
    module = ScipyConv2d(3, 4)
    assert dict(module.named_parameters()).keys() == {"weight", "bias"}
    assert module.weight.shape == (3, 4)
    assert module.bias.shape == (1,)
    assert repr(module) == "ScipyConv2d(kernel_size=(3, 4), bias=True)"
    assert module.weight.abs().max() <= 1 / 12**0.5
    assert module(torch.randn(2, 8, 9)).shape == (2, 6, 6)
    no_bias = ScipyConv2d(2, 2, bias=False, dtype=torch.float64)
    assert no_bias.bias is None
    assert no_bias.weight.dtype == torch.float64
    assert "bias=False" in repr(no_bias)
    torch.manual_seed(0)
    before = no_bias.weight.detach().clone()
    no_bias.reset_parameters()
    assert not torch.equal(before, no_bias.weight)


def test_module_trains():
    torch.manual_seed(0)
    target_kernel = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    module = ScipyConv2d(2, 2)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    x = torch.randn(16, 10, 10)
    y = native(x, target_kernel) + 0.7
    for _ in range(400):
        optimizer.zero_grad()
        loss = (module(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(module.weight.detach(), target_kernel, atol=1e-2, rtol=0)
    torch.testing.assert_close(module.bias.detach(), torch.tensor([0.7]), atol=1e-2, rtol=0)


@pytest.mark.parametrize(
    ("kh", "kw", "error"), [(0, 3, ValueError), (3, -1, ValueError), (2.0, 2, TypeError), (True, 2, TypeError)]
)
def test_module_bad_sizes(kh, kw, error):
    with pytest.raises(error, match=r"^ScipyConv2d: k[hw] must be a(n int| positive int), got"):
        ScipyConv2d(kh, kw)


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64])
def test_module_refuses_an_unsupported_dtype_when_built(dtype):
    rule = "dtype must be float16, bfloat16, float32 or float64"
    with pytest.raises(TypeError, match=f"^ScipyConv2d: {rule}"):
        ScipyConv2d(3, 3, dtype=dtype)


@pytest.mark.parametrize(("shape", "kernel"), [((12, 12), (3, 3)), ((9, 9), (8, 8)), ((20, 20), (8, 8))])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_inf_and_nan_stay_in_the_windows_that_hold_them(shape, kernel, value, device):
    """Each algorithm (taps, outputs, FFT) gives native's pattern of non-finite outputs and gradients."""
    input, weight = randn(*shape, device=device), randn(*kernel, device=device)
    with torch.no_grad():
        input[shape[0] // 2, shape[1] // 2] = value
    output, expected = scipy_conv2d(input, weight), native(input, weight)
    torch.testing.assert_close(output, expected, equal_nan=True)
    grad = torch.randn_like(expected)
    (ours,) = torch.autograd.grad(output, weight, grad)
    (theirs,) = torch.autograd.grad(expected, weight, grad)
    torch.testing.assert_close(ours, theirs, equal_nan=True)


@pytest.mark.parametrize(("shape", "kernel"), [((8, 8), (3, 3)), ((9, 9), (8, 8)), ((20, 20), (8, 8))])
def test_overflow_and_inf_minus_inf_without_a_warning(shape, kernel, device):
    """As native: sums past float32's range are Inf, and Inf - Inf is NaN, with no warning (the suite's are errors).

    Each algorithm (taps, outputs, FFT) gets both. The second pair of infinities sits at
    one row's end and the next row's start, which share no window.
    """
    weight = torch.ones(*kernel, device=device)
    huge = torch.full(shape, 3e38, device=device)
    overflown = scipy_conv2d(huge, weight)
    torch.testing.assert_close(overflown, native(huge, weight))
    assert overflown.isinf().all()
    input = torch.zeros(shape, device=device)
    input[1, 1], input[1, 2] = float("inf"), -float("inf")
    input[5, -1], input[6, 0] = float("inf"), -float("inf")
    output = scipy_conv2d(input, weight)
    torch.testing.assert_close(output, native(input, weight), equal_nan=True)
    assert output.isnan().any()


def test_float32_keeps_its_digits_where_outputs_are_small(device):
    """The FFT's error scales with the largest value in the image; small outputs must not inherit it."""
    scale = torch.logspace(-3, 3, 40, device=device)[:, None]
    input, weight = torch.rand(40, 40, device=device) * scale, torch.rand(8, 8, device=device)
    output, exact = scipy_conv2d(input, weight), native(input.double(), weight.double())
    relative = ((output.double() - exact).abs() / exact.abs()).max()
    assert relative < 1e-5


def native_transposed(input, weight):
    images = input.reshape(-1, 1, *input.shape[-2:])
    out = F.conv_transpose2d(images, weight[None, None])
    return out.reshape(*input.shape[:-2], *out.shape[-2:])


def transposed(input, weight):
    """The op's transpose, the full convolution, as the backward op gives it (with placeholders for the
    gradients not asked for): the input's gradient for `input`."""
    full = [*input.shape[:-2], input.shape[-2] + weight.shape[-2] - 1, input.shape[-1] + weight.shape[-1] - 1]
    backward = torch.ops.reference.scipy_conv2d_backward
    out, _, _ = backward(input, input.new_zeros(full), weight, None, full, None, None)
    return out


@pytest.mark.parametrize(("shape", "kernel"), [((6, 5), (3, 2)), ((2, 2), (8, 7)), ((2, 3, 16, 15), (8, 9))])
def test_transposed_op_is_the_full_convolution(shape, kernel, device):
    """The input's gradient: native's transposed convolution, by taps, by outputs and by FFT.

    As the array kernel gives it, as the backward op does, and differentiated in reverse and
    forward mode, as the op's Backward Function differentiates it (double backward).
    """
    input, weight = randn(*shape, device=device), randn(*kernel, device=device)
    expected = native_transposed(input, weight)
    input_array, weight_array = input.detach().cpu().numpy(), weight.detach().cpu().numpy()
    host = op_module.scipy_conv2d_kernel(NUMPY, input_array, weight_array, transposed=True)
    torch.testing.assert_close(torch.from_numpy(host), expected.detach().cpu())
    torch.testing.assert_close(transposed(input.detach(), weight.detach()), expected.detach())
    full = [*shape[:-2], shape[-2] + kernel[-2] - 1, shape[-1] + kernel[-1] - 1]
    point = torch.zeros(full, dtype=input.dtype, device=device)  # where the op is linearised: any input of its shape
    args = (input.detach(), point, weight.detach(), None, full, None, None)
    torch.library.opcheck(torch.ops.reference.scipy_conv2d_backward, args)
    point.requires_grad_()

    def input_gradient(grad, weight):
        return torch.autograd.grad(scipy_conv2d(point, weight), point, grad, create_graph=True)[0]

    torch.testing.assert_close(input_gradient(input, weight), expected)
    # The FFT case's full Jacobians (1440 by 3174) would take most of a minute: it checks random projections.
    fast = input.numel() > 100
    assert torch.autograd.gradcheck(input_gradient, (input, weight), check_forward_ad=True, fast_mode=fast)


FLOP_CASES = [((16, 16), (3, 3)), ((2, 16, 16), (3, 3)), ((3, 2, 12, 17), (4, 6)), ((2, 20, 19), (9, 8))]


def flops(step, *inputs):
    with FlopCounterMode(display=False) as counter:
        step(*inputs)
    return counter.get_total_flops()


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize(("shape", "kernel"), FLOP_CASES)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_flop_counts_match_native(shape, kernel, backward, device):
    """torch.utils.flop_counter counts what it counts for native's convolutions, from shapes alone."""

    def step(op):
        def run(input, weight):
            output = op(input, weight)
            if backward:
                output.sum().backward()

        return run

    inputs = (randn(*shape, device=device), randn(*kernel, device=device))
    assert flops(step(scipy_conv2d), *inputs) == flops(step(native), *inputs) > 0


def test_flop_counts_of_the_kernel_ops():
    """The forward op, given a weight with leading dims, counts one native output channel per kernel; the
    backward op counts the gradients it gives, as native's convolution_backward counts those it is asked for."""
    forward = torch.ops.reference.scipy_conv2d_forward
    backward = torch.ops.reference.scipy_conv2d_backward
    input, weight = torch.randn(3, 1, 12, 11), torch.randn(1, 4, 5, 6)
    assert flops(forward, input, weight, None) == flops(F.conv2d, input, weight.transpose(0, 1))
    input, weight, bias, grad = torch.randn(3, 12, 11), torch.randn(5, 6), torch.randn(1), torch.randn(3, 8, 6)
    for wanted in ([True, False], [False, True], [True, True]):
        targets = [list(input.shape) if wanted[0] else None, list(weight.shape) if wanted[1] else None, [1]]
        ours = flops(backward, grad, input, weight, bias, *targets)
        native_args = (grad[:, None], input[:, None], weight[None, None], [1], [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
        assert ours == flops(torch.ops.aten.convolution_backward, *native_args, [*wanted, True]) > 0


@pytest.fixture
def routes(monkeypatch):
    """How many output images each algorithm computes, on the CPU, from wrappers around `_correlate_by_*`."""
    counts = collections.Counter()
    for route in ("taps", "outputs", "fft"):
        function = getattr(op_module, f"_correlate_by_{route}")

        def counting(xp, x, w, *args, function=function, route=route):
            counts[route] += math.prod(torch.broadcast_shapes(x.shape[:-2], w.shape[:-2]))
            return function(xp, x, w, *args)

        monkeypatch.setattr(op_module, f"_correlate_by_{route}", counting)
    return counts


ORDINARY = {
    "normal": lambda: torch.randn(3, 30, 30, dtype=F64),
    "uniform": lambda: torch.rand(3, 30, 30, dtype=F64),
    "float32": lambda: torch.randn(3, 30, 30),
    "smooth": lambda: torch.randn(3, 30, 30, dtype=F64).cumsum(-1).cumsum(-2),
    "half zeros": lambda: torch.randn(3, 30, 30, dtype=F64).relu(),
    "zero border": lambda: F.pad(torch.randn(3, 22, 22, dtype=F64), (4, 4, 4, 4)),
    "a zero image": lambda: torch.cat([torch.randn(2, 30, 30, dtype=F64), torch.zeros(1, 30, 30, dtype=F64)]),
}


@pytest.mark.parametrize("data", ORDINARY)
def test_ordinary_data_takes_the_fft_route(data, routes):
    """Forward, the input's gradient (the transposed op) and the weight's: three FFTs of every image."""
    input = ORDINARY[data]().requires_grad_()
    weight = torch.randn(8, 8, dtype=input.dtype, requires_grad=True)
    scipy_conv2d(input, weight).sum().backward()
    assert routes == {"fft": 9}


@pytest.mark.parametrize("outlier", [1e8, 1e16])
def test_the_fft_route_redoes_an_image_with_an_outlier_directly(outlier, routes):
    """Only that image: by taps forward, and by outputs for the weight's gradient (64 outputs of 23x23 taps)."""
    input, weight = randn(3, 30, 30), randn(8, 8)
    with torch.no_grad():
        input[1, 3, 4] = outlier
    scipy_conv2d(input, weight).sum().backward()
    assert routes == {"fft": 9, "taps": 1, "outputs": 1}


@pytest.mark.parametrize(
    ("dtype", "outlier"),
    [(F64, 1e8), (F64, 1e12), (F64, 1e16), (torch.float32, 1e20), (torch.float32, 1e30), (torch.bfloat16, 1e30)],
)
def test_an_outlier_stays_in_the_windows_that_hold_it(dtype, outlier, device):
    """Outputs, weight gradients and transposed outputs whose windows miss the outlier keep native's digits.

    One large value adds an FFT's rounding error to every output; the FFT route must see that and
    sum that image directly, as native does. The first image has no outlier, and keeps its FFT.
    bfloat16 is computed in float32, so native computes it so too, and is compared as `assert_matches`
    does: the weight's gradient sums the images in bfloat16.
    """

    def baseline(op):
        return op if dtype != torch.bfloat16 else lambda x, w: op(x.float(), w.float()).to(dtype)

    def assert_close(actual, expected):
        scale = expected.abs().max().item()
        within = tolerances(dtype) if dtype != torch.bfloat16 else {"rtol": 3e-2, "atol": 3e-2 * scale}
        torch.testing.assert_close(actual, expected, **within)

    input, weight = randn(2, 30, 30, dtype=dtype, device=device), randn(8, 8, dtype=dtype, device=device)
    with torch.no_grad():
        input[1, 0, 0] = outlier
    output, expected = scipy_conv2d(input, weight), baseline(native)(input, weight)
    assert_close(output[..., 10:, 10:], expected[..., 10:, 10:])
    grad = torch.randn_like(expected)
    (ours,) = torch.autograd.grad(output, weight, grad)
    (theirs,) = torch.autograd.grad(expected, weight, grad)
    assert_close(ours[1:, 1:], theirs[1:, 1:])
    input, weight = input.detach(), weight.detach()
    full = transposed(input, weight)
    assert_close(full[..., 10:, 10:], baseline(native_transposed)(input, weight)[..., 10:, 10:])


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
@pytest.mark.parametrize(("shape", "kernel", "tap"), [((20, 20), (8, 8), (3, 4)), ((6, 8), (3, 3), (1, 1))],
                         ids=["fft route", "direct route"])  # fmt: skip
def test_an_inf_or_nan_in_the_weight_gives_natives_pattern_in_the_output_and_every_gradient(shape, kernel, tap, value):
    """The FFT would spread it over every output; a zero-padded direct sum would multiply it by padding."""
    x = torch.randn(2, *shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(kernel, dtype=torch.float64)
    weight[tap] = value
    weight.requires_grad_()
    bias = torch.randn(1, dtype=torch.float64, requires_grad=True)
    ours, theirs = scipy_conv2d(x, weight, bias), native(x, weight, bias)
    grad = torch.randn_like(theirs)
    for a, b in zip((ours, *torch.autograd.grad(ours, (x, weight, bias), grad)),
                    (theirs, *torch.autograd.grad(theirs, (x, weight, bias), grad)), strict=True):  # fmt: skip
        assert (a.isnan().sum(), a.isinf().sum()) == (b.isnan().sum(), b.isinf().sum())
        torch.testing.assert_close(a, b, equal_nan=True)
