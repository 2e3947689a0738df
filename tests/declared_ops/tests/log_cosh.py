"""log_cosh: one input, no parameter, elementwise, with every derivative kernel."""

import pytest
import torch
from conftest import assert_matches, randn, tolerances

from own_ops import LogCosh, log_cosh


def native(x):
    return torch.log(torch.cosh(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4, 5)])
def test_values_and_gradients_match_native(shape, dtype, device):
    assert_matches(log_cosh, native, randn(*shape, dtype=dtype, device=device), **tolerances(dtype))


def test_large_inputs_do_not_overflow():
    x = torch.tensor([-1000.0, 1000.0], dtype=torch.float64)
    torch.testing.assert_close(log_cosh(x), x.abs() - torch.log(torch.tensor(2.0, dtype=torch.float64)))


def test_gradcheck_and_gradgradcheck(device):
    x = randn(4, 5, device=device)
    assert torch.autograd.gradcheck(log_cosh, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(log_cosh, (x,), check_fwd_over_rev=True, check_rev_over_rev=True)


def test_hessian_and_hvp_match_native(device):
    x, v = (torch.randn(3, 4, dtype=torch.float64, device=device) for _ in range(2))

    def loss(fn):
        return lambda x: fn(x).pow(2).sum()

    torch.testing.assert_close(torch.func.hessian(loss(log_cosh))(x), torch.func.hessian(loss(native))(x))
    ours = torch.autograd.functional.hvp(loss(log_cosh), x, v)
    torch.testing.assert_close(ours, torch.autograd.functional.hvp(loss(native), x, v))


def test_forward_over_reverse_with_dual_tensors(device):
    x = randn(3, 4, device=device)
    tangent = torch.randn_like(x)
    forward_ad = torch.autograd.forward_ad

    def gradient_tangent(fn):
        with forward_ad.dual_level():
            dual = forward_ad.make_dual(x, tangent)
            (grad,) = torch.autograd.grad(fn(dual).pow(2).sum(), dual, create_graph=True)
            return forward_ad.unpack_dual(grad).tangent

    torch.testing.assert_close(gradient_tangent(log_cosh), gradient_tangent(native))


def test_compile_fullgraph_forward_and_backward_match_eager():
    compiled = torch.compile(lambda x: log_cosh(x) * 2, fullgraph=True)
    assert_matches(compiled, lambda x: log_cosh(x) * 2, randn(3, 6))


def test_export_matches_and_backpropagates():
    x = randn(2, 5)
    exported = torch.export.export(LogCosh(), (x,)).module()
    assert_matches(exported, log_cosh, x)


def test_opcheck():
    torch.library.opcheck(torch.ops.own_ops.log_cosh, (randn(3, 4),))


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (
            torch.ones(3, dtype=torch.int64),
            TypeError,
            "x must be float16, bfloat16, float32 or float64, got torch.int64",
        ),
        ([1.0], TypeError, "x must be a torch.Tensor, got list"),
    ],
)
def test_bad_input(x, error, message):
    with pytest.raises(error, match=f"^log_cosh: {message}"):
        log_cosh(x)
