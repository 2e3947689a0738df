"""normalize: x / x.sum() over the whole input, so it declares no batch: vmap runs it once per sample."""

import pytest
import torch
from conftest import assert_matches, tolerances

from own_ops import Normalize, normalize


def native(x):
    return x / x.sum()


def positive(*shape, dtype=torch.float64, device="cpu"):
    """Inputs whose sum is far from 0."""
    return (torch.rand(shape, dtype=dtype, device=device) + 0.5).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 5)])
def test_values_and_gradients_match_native(shape, dtype, device):
    assert_matches(normalize, native, positive(*shape, dtype=dtype, device=device), **tolerances(dtype))


def test_vmap_normalizes_each_sample(device):
    x = positive(5, 3, 4, device=device).detach()
    batched = torch.func.vmap(normalize)(x)
    torch.testing.assert_close(batched, torch.stack([normalize(sample) for sample in x]))
    torch.testing.assert_close(batched.sum((1, 2)), torch.ones(5, dtype=torch.float64, device=device))


def test_jacrev_and_gradcheck(device):
    x = positive(3, 4, device=device)
    torch.testing.assert_close(torch.func.jacrev(normalize)(x.detach()), torch.func.jacrev(native)(x.detach()))
    assert torch.autograd.gradcheck(normalize, (x,))


def test_compile_fullgraph_forward_and_backward_match_eager():
    compiled = torch.compile(lambda x: normalize(x).sin(), fullgraph=True)
    assert_matches(compiled, lambda x: normalize(x).sin(), positive(3, 6))


def test_export_matches_and_backpropagates():
    x = positive(2, 5)
    assert_matches(torch.export.export(Normalize(), (x,)).module(), normalize, x)


def test_opcheck():
    torch.library.opcheck(torch.ops.own_ops.normalize, (positive(3, 6),))


def test_bad_input():
    with pytest.raises(
        TypeError, match=r"^normalize: x must be float16, bfloat16, float32 or float64, got torch.int64"
    ):
        normalize(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"^normalize: x must be a torch.Tensor, got float"):
        normalize(1.0)
