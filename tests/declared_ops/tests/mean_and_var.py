"""mean_and_var: two outputs, each with a gradient of its own (None where unused), and forward mode."""

import pytest
import torch
from conftest import assert_matches, randn, tolerances

from own_ops import MeanAndVar, mean_and_var


def native(x):
    mean = x.mean(-1)
    return mean, (x - mean[..., None]).pow(2).mean(-1)


def stacked(fn):
    """The two outputs as one tensor, for the helpers that compare one output."""
    return lambda *args: torch.stack(fn(*args))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 0, 4), (4, 1)])
def test_values_and_gradients_match_native(shape, dtype, device):
    assert_matches(
        stacked(mean_and_var), stacked(native), randn(*shape, dtype=dtype, device=device), **tolerances(dtype)
    )


@pytest.mark.parametrize("used", [0, 1], ids=["mean", "var"])
def test_gradient_of_one_output_alone(used, device):
    """The unused output's gradient reaches the op as None."""
    x = randn(3, 6, device=device)
    grad = torch.randn(3, dtype=torch.float64, device=device)
    ours = torch.autograd.grad(mean_and_var(x)[used], x, grad)
    torch.testing.assert_close(ours, torch.autograd.grad(native(x)[used], x, grad))


def test_gradcheck(device):
    assert torch.autograd.gradcheck(mean_and_var, (randn(3, 5, device=device),), check_forward_ad=True)


def test_jacrev_and_jacfwd_match_native(device):
    x = torch.randn(3, 4, dtype=torch.float64, device=device)
    torch.testing.assert_close(torch.func.jacrev(mean_and_var)(x), torch.func.jacrev(native)(x))
    torch.testing.assert_close(torch.func.jacfwd(mean_and_var)(x), torch.func.jacfwd(native)(x))


def test_vmap_matches_native(device):
    x = torch.randn(4, 3, 5, dtype=torch.float64, device=device)
    torch.testing.assert_close(torch.func.vmap(mean_and_var, in_dims=1)(x), torch.func.vmap(native, in_dims=1)(x))


def test_compile_fullgraph_forward_and_backward_match_eager():
    compiled = torch.compile(lambda x: torch.stack(mean_and_var(x)) * 2, fullgraph=True)
    assert_matches(compiled, lambda x: torch.stack(mean_and_var(x)) * 2, randn(3, 6))


def test_export_matches_and_backpropagates():
    x = randn(2, 5)
    exported = torch.export.export(MeanAndVar(), (x,)).module()
    assert_matches(stacked(exported), stacked(mean_and_var), x)


def test_opcheck():
    torch.library.opcheck(torch.ops.own_ops.mean_and_var, (randn(3, 6),))


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.ones(()), ValueError, r"x must have shape \(..., N\) with N >= 1, got shape \(\)"),
        (torch.ones(3, 0), ValueError, r"x must have shape \(..., N\) with N >= 1, got shape \(3, 0\)"),
        (torch.ones(3, dtype=torch.complex64), TypeError, "x must be float16, bfloat16, float32 or float64"),
    ],
)
def test_bad_input(x, error, message):
    with pytest.raises(error, match=f"^mean_and_var: {message}"):
        mean_and_var(x)
