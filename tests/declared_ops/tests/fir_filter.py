"""fir_filter: a learnable filter (a parameter, which does not broadcast with x), bilinear in x and the taps."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_matches, randn, tolerances

from own_ops import FirFilter, fir_filter


def native(x, taps):
    """conv1d, which correlates, on x padded as the op pads it."""
    size = taps.shape[0]
    padded = F.pad(x.reshape(-1, 1, x.shape[-1]), (size // 2, size - 1 - size // 2))
    return F.conv1d(padded, taps.reshape(1, 1, size)).reshape(x.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("x_shape", "size"), [((9,), 3), ((2, 3, 8), 4), ((4, 2), 5), ((0, 6), 1)])
def test_values_and_gradients_match_native(x_shape, size, dtype, device):
    x, taps = randn(*x_shape, dtype=dtype, device=device), randn(size, dtype=dtype, device=device)
    assert_matches(fir_filter, native, x, taps, **tolerances(dtype))


def test_gradcheck_and_gradgradcheck(device):
    x, taps = randn(3, 7, device=device), randn(4, device=device)
    assert torch.autograd.gradcheck(fir_filter, (x, taps), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(fir_filter, (x, taps), check_fwd_over_rev=True, check_rev_over_rev=True)


def test_third_derivatives_match_native():
    """Bilinear: third derivatives need no kernel. Those in x are zero here, as native's are."""
    x, taps, weights = randn(2, 6), randn(3), torch.randn(2, 6, dtype=torch.float64)

    def third(fn):
        (grad_x,) = torch.autograd.grad((fn(x, taps) * weights).sum(), x, create_graph=True)
        (grad_taps,) = torch.autograd.grad(grad_x.pow(2).sum(), taps, create_graph=True)
        return torch.autograd.grad(grad_taps.pow(2).sum(), (x, taps), materialize_grads=True)

    ours, theirs = third(fir_filter), third(native)
    torch.testing.assert_close(ours, theirs)
    assert not ours[0].any() and ours[1].abs().min() > 0


def test_per_sample_gradients_of_the_taps(device):
    x, taps = (
        torch.randn(5, 2, 9, dtype=torch.float64, device=device),
        torch.randn(3, dtype=torch.float64, device=device),
    )

    def loss(fn):
        return lambda x, taps: fn(x, taps).pow(2).sum()

    per_sample = torch.func.vmap(torch.func.grad(loss(fir_filter), argnums=1), in_dims=(0, None))(x, taps)
    expected = torch.stack([torch.func.grad(loss(native), argnums=1)(sample, taps) for sample in x])
    torch.testing.assert_close(per_sample, expected)


def test_vmap_over_the_taps(device):
    x, taps = (
        torch.randn(2, 9, dtype=torch.float64, device=device),
        torch.randn(4, 3, dtype=torch.float64, device=device),
    )
    batched = torch.func.vmap(fir_filter, in_dims=(None, 0))(x, taps)
    torch.testing.assert_close(batched, torch.stack([native(x, t) for t in taps]))


def test_compile_fullgraph_forward_and_backward_match_eager():
    compiled = torch.compile(lambda x, taps: fir_filter(x, taps).sin(), fullgraph=True)
    assert_matches(compiled, lambda x, taps: fir_filter(x, taps).sin(), randn(3, 8), randn(3))


def test_export_matches_and_backpropagates():
    module, x = FirFilter(3, dtype=torch.float64), randn(2, 7)
    exported = torch.export.export(module, (x,)).module()
    torch.testing.assert_close(exported(x), module(x))
    ours = torch.autograd.grad(exported(x).pow(2).sum(), (x, *exported.parameters()))
    torch.testing.assert_close(ours, torch.autograd.grad(module(x).pow(2).sum(), (x, module.taps)))


def test_opcheck():
    torch.library.opcheck(torch.ops.own_ops.fir_filter, (randn(3, 8), randn(3)))
    torch.library.opcheck(torch.ops.own_ops.fir_filter_forward, (torch.randn(3, 8), torch.randn(3)))


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (
            (torch.ones(3, 8), torch.ones(2, 3)),
            ValueError,
            r"taps must have shape \(K,\) with K >= 1, got shape \(2, 3\)",
        ),
        ((torch.ones(3, 8), torch.ones(0)), ValueError, r"taps must have shape \(K,\) with K >= 1, got shape \(0,\)"),
        ((torch.ones(()), torch.ones(3)), ValueError, r"x must have shape \(..., N\), got shape \(\)"),
        ((torch.ones(8), torch.ones(3, dtype=torch.float64)), TypeError, "taps must have the x's dtype torch.float32"),
    ],
)
def test_bad_input(args, error, message):
    with pytest.raises(error, match=f"^fir_filter: {message}"):
        fir_filter(*args)


def test_bad_taps_under_vmap_name_the_per_sample_shape():
    with pytest.raises(ValueError, match=r"^fir_filter: taps must have shape \(K,\) with K >= 1, got shape \(2, 3\)"):
        torch.func.vmap(fir_filter, in_dims=(None, 0))(torch.ones(8), torch.ones(4, 2, 3))
