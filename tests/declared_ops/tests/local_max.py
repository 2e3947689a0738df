"""local_max: int and int[] hyperparameters, a saved index, and reverse mode only (no jvp, no curvature)."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_matches

from own_ops import LocalMax, local_max


def native(x, size, axes=(-1,)):
    """Box maxima by unfold, one axis at a time, the box cut at the edges as the op cuts it."""
    for axis in axes:
        moved = x.movedim(axis, -1)
        padded = F.pad(moved, (size // 2, size - 1 - size // 2), value=-torch.inf)
        x = padded.unfold(-1, size, 1).amax(-1).movedim(-1, axis)
    return x


def distinct(*shape, device="cpu"):
    """Inputs without ties, and no two elements closer than gradcheck's step."""
    values = torch.randperm(torch.Size(shape).numel(), dtype=torch.float64, device=device).reshape(shape)
    return values.requires_grad_()


@pytest.mark.parametrize(
    ("shape", "size", "axes"),
    [((10,), 3, [-1]), ((4, 9), 4, [-1]), ((5, 6), 3, [0, 1]), ((2, 5, 6), 2, [1]), ((3, 4), 1, [0]), ((0, 4), 3, [1])],
)
def test_values_and_gradients_match_native(shape, size, axes, device):
    assert_matches(local_max, native, distinct(*shape, device=device), size, axes)


def test_gradcheck(device):
    x = distinct(4, 7, device=device)
    assert torch.autograd.gradcheck(lambda x: local_max(x, 3, [0, 1]), (x,))


def test_torch_ops_takes_the_default_axes():
    x = distinct(4, 7)
    torch.testing.assert_close(torch.ops.own_ops.local_max(x, 3), native(x, 3))
    torch.testing.assert_close(torch.ops.own_ops.local_max(x, 3, [0]), native(x, 3, [0]))
    torch.testing.assert_close(local_max(x, 3), native(x, 3))


@pytest.mark.parametrize("derivative", ["jacfwd", "double backward"])
def test_derivatives_it_lacks_raise_one_clear_error(derivative):
    x = distinct(3, 5)
    with pytest.raises(RuntimeError, match=r"^local_max: .* needs a jvp kernel, which the op does not declare"):
        if derivative == "jacfwd":
            torch.func.jacfwd(lambda x: local_max(x, 3))(x)
        else:
            (grad,) = torch.autograd.grad(local_max(x, 3).pow(2).sum(), x, create_graph=True)
            grad.sum().backward()


def test_compile_fullgraph_forward_and_backward_match_eager():
    compiled = torch.compile(lambda x: local_max(x, 3, [0, 1]) * 2, fullgraph=True)
    assert_matches(compiled, lambda x: local_max(x, 3, [0, 1]) * 2, distinct(4, 6))


def test_export_matches_and_backpropagates():
    x = distinct(4, 6)
    exported = torch.export.export(LocalMax(3, (0, 1)), (x,)).module()
    assert_matches(exported, lambda x: local_max(x, 3, [0, 1]), x)


def test_opcheck():
    torch.library.opcheck(torch.ops.own_ops.local_max, (distinct(4, 6), 3, [0, 1]))
    torch.library.opcheck(torch.ops.own_ops.local_max_forward, (torch.randn(4, 6), 2, [-1]))


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((torch.ones(3, 4), 0), ValueError, "size must be at least 1, got 0"),
        ((torch.ones(3, 4), 2.0), TypeError, "size must be an int, got float"),
        ((torch.ones(3, 4), 3, [0, 2]), ValueError, r"axes\[1\] = 2 is out of range for x of shape \(3, 4\)"),
        ((torch.ones(3, 4), 3, 1), TypeError, "axes must be a list or tuple of ints, got int"),
        ((torch.ones(3, dtype=torch.int32), 3), TypeError, "x must be float16, bfloat16, float32 or float64"),
    ],
)
def test_bad_input(args, error, message):
    with pytest.raises(error, match=f"^local_max: {message}"):
        local_max(*args)
