"""masked_scale: an optional tensor input (Tensor? mask=None), which has a gradient when it is given."""

import pytest
import torch
from conftest import assert_matches, randn, tolerances

from own_ops import MaskedScale, masked_scale


def native(x, scale, mask=None):
    return scale * x if mask is None else scale * x * mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("x_shape", "scale_shape", "mask_shape"),
    [
        ((3, 5), (5,), None),
        ((3, 5), (5,), (3, 5)),
        ((2, 3, 4), (), (3, 1)),
        ((4, 1), (4, 1), (6,)),
        ((0, 3), (3,), None),
    ],
)
def test_values_and_gradients_match_native(x_shape, scale_shape, mask_shape, dtype, device):
    x, scale = randn(*x_shape, dtype=dtype, device=device), randn(*scale_shape, dtype=dtype, device=device)
    mask = None if mask_shape is None else randn(*mask_shape, dtype=dtype, device=device)
    assert_matches(masked_scale, native, x, scale, mask, **tolerances(dtype))


def test_a_mask_that_needs_no_gradient(device):
    x, scale = randn(3, 5, device=device), randn(5, device=device)
    mask = (torch.rand(3, 5, device=device) > 0.5).double()
    assert_matches(masked_scale, native, x, scale, mask)


def test_gradcheck_with_and_without_mask(device):
    x, scale, mask = randn(3, 4, device=device), randn(4, device=device), randn(3, 4, device=device)
    assert torch.autograd.gradcheck(masked_scale, (x, scale, mask), check_forward_ad=True)
    assert torch.autograd.gradcheck(masked_scale, (x, scale), check_forward_ad=True)


def test_forward_mode_matches_native(device):
    x, scale, mask = (torch.randn(3, 4, dtype=torch.float64, device=device) for _ in range(3))
    tangents = tuple(torch.randn_like(t) for t in (x, scale, mask))
    torch.testing.assert_close(
        torch.func.jvp(masked_scale, (x, scale, mask), tangents), torch.func.jvp(native, (x, scale, mask), tangents)
    )
    ours = torch.func.jvp(lambda x, s: masked_scale(x, s), (x, scale), tangents[:2])
    torch.testing.assert_close(ours, torch.func.jvp(native, (x, scale), tangents[:2]))


def test_torch_ops_takes_the_default_mask():
    x, scale = randn(3, 5), randn(5)
    assert_matches(torch.ops.own_ops.masked_scale, native, x, scale)
    mask = randn(3, 5)
    assert_matches(torch.ops.own_ops.masked_scale, native, x, scale, mask)


@pytest.mark.parametrize("with_mask", [False, True])
def test_compile_fullgraph_forward_and_backward_match_eager(with_mask):
    x, scale = randn(3, 6), randn(6)
    mask = randn(3, 6) if with_mask else None
    compiled = torch.compile(lambda *args: masked_scale(*args).sin(), fullgraph=True)
    assert_matches(compiled, lambda *args: masked_scale(*args).sin(), x, scale, mask)


def test_export_matches_and_backpropagates():
    module, x, mask = MaskedScale(5, dtype=torch.float64), randn(2, 5), randn(2, 5)
    exported = torch.export.export(module, (x, mask)).module()
    torch.testing.assert_close(exported(x, mask), module(x, mask))
    ours = torch.autograd.grad(exported(x, mask).pow(2).sum(), (x, mask, *exported.parameters()))
    torch.testing.assert_close(ours, torch.autograd.grad(module(x, mask).pow(2).sum(), (x, mask, module.scale)))


@pytest.mark.parametrize("with_mask", [False, True])
def test_opcheck(with_mask):
    mask = (randn(3, 6),) if with_mask else ()
    torch.library.opcheck(torch.ops.own_ops.masked_scale, (randn(3, 6), randn(6), *mask))


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (
            (torch.ones(3, 4), torch.ones(5)),
            ValueError,
            r"scale must broadcast with x's shape \(3, 4\), got shape \(5,\)",
        ),
        (
            (torch.ones(3, 4), torch.ones(4), torch.ones(3)),
            ValueError,
            r"mask must broadcast with x and scale's shape \(3, 4\), got shape \(3,\)",
        ),
        (
            (torch.ones(3, 4), torch.ones(4), torch.ones(3, 4, dtype=torch.float64)),
            TypeError,
            "mask must have the x's dtype torch.float32",
        ),
        ((torch.ones(3, 4), torch.ones(4), [1.0]), TypeError, "mask must be a torch.Tensor, got list"),
        ((torch.ones(3, 4), 2.0), TypeError, "scale must be a torch.Tensor, got float"),
    ],
)
def test_bad_input(args, error, message):
    with pytest.raises(error, match=f"^masked_scale: {message}"):
        masked_scale(*args)
