"""my_op: the contract every op keeps, declared for this op, and the checks of this op's own design.

- The declaration (`TestContract`): `native`, a torch version of the op (or a slow but obviously
  correct one), the samples it is checked on, and the bad inputs it must refuse. The contract
  (torch_scipy_op.testing.OpContract) runs every check on it. When you change the op, change these.
- This op's design, at the bottom: checks of choices this op made (elementwise on any
  shape, a weight that broadcasts, a float hyperparameter). Change or delete each one
  where your op differs; each says when.
"""

import numpy as np
import pytest
import torch
from torch_scipy_op.testing import OpContract, assert_matches, randn

from reference.my_op import MyOp, my_op


def native(x, weight, frequency=1.0):
    return weight * torch.sin(frequency * x)


class TestContract(OpContract):
    op = staticmethod(my_op)
    native = staticmethod(native)
    # The weight broadcasts over x's batch.
    samples = (
        {"x": (4, 6), "weight": (6,), "frequency": 0.7},
        {"x": (7, 9), "weight": (1,), "frequency": 0.7},
        {"x": (3, 4, 6), "weight": (), "frequency": 0.7},
        {"x": (2, 3, 5, 4), "weight": (5, 4), "frequency": 0.7},
        {"x": (5, 1), "weight": (5, 1)},
    )
    bad_inputs = (
        (
            {"x": lambda dtype, device: torch.ones(3, 4, dtype=torch.complex64), "weight": (4,)},
            TypeError,
            r"x must be .* got torch.complex64",
        ),
        ({"x": (3, 4), "weight": (5,)}, ValueError, r"weight must broadcast with x's shape \(3, 4\), got shape \(5,\)"),
        ({"x": (3,), "weight": (3,), "frequency": 10**400}, ValueError, "frequency is too large for a float"),
        (
            {"x": lambda dtype, device: torch.eye(3).to_sparse(), "weight": (3,)},
            TypeError,
            r"x must be a dense \(strided\) tensor, got",
        ),
    )
    # (batch, size, size) float32 images, from 32x32 to 1024x1024, with a weight per column.
    benchmark_samples = tuple(
        {"x": (b, s, s), "weight": (s,), "frequency": 0.7} for b, s in [(1, 32), (1, 64), (8, 128), (8, 256), (1, 1024)]
    )

    @staticmethod
    def module():
        layer = MyOp(8, frequency=0.9)
        return layer, (4, 6, 8), lambda module, x: native(x, module.weight, module.frequency)


# ----------------------------------------------------------------------------
# This op's design: change or delete each test where your op differs.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(("x_shape", "weight_shape"), [((), ()), ((5,), (5,)), ((3, 0), (1,)), ((0,), ())])
def test_elementwise_on_any_shape(x_shape, weight_shape, device):
    """An elementwise op takes any shape, 0-d and empty included. Delete if your op needs (..., H, W)."""
    x, weight = randn(*x_shape, device=device), randn(*weight_shape, device=device)
    assert_matches(my_op, native, x, weight, 0.7)


def test_saves_what_the_backward_uses_as_native_does():
    """The backward uses the phase, not x: an inference-mode x, or one changed in place after the forward, is fine.

    Change with what your op saves (`saved=` in its declaration).
    """
    weight = torch.randn(6, dtype=torch.float64, requires_grad=True)
    with torch.inference_mode():
        x = torch.randn(4, 6, dtype=torch.float64)
    (ours,) = torch.autograd.grad(my_op(x, weight, 0.7).sum(), weight)
    (theirs,) = torch.autograd.grad(native(x, weight, 0.7).sum(), weight)
    torch.testing.assert_close(ours, theirs)
    x = torch.randn(4, 6, dtype=torch.float64)
    expected = torch.autograd.grad(native(x, weight, 0.7).sum(), weight)
    y = my_op(x, weight, 0.7)
    x.add_(1.0)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), weight), expected)


def test_backward_over_tangents_in_and_after_a_dual_level():
    """Second derivatives of a tangent: within the dual level, torch would also take their tangents (third
    derivatives), which the op refuses; after it, they are native's. Delete if your op has no curvature kernel."""
    x, weight = randn(4, 6), randn(6)
    forward_ad = torch.autograd.forward_ad
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, torch.randn_like(x))
        tangent = forward_ad.unpack_dual(my_op(dual, weight, 0.7)).tangent.sum()
        expected = forward_ad.unpack_dual(native(dual, weight, 0.7)).tangent.sum()
        with pytest.raises(RuntimeError, match="my_op: third derivatives are not supported"):
            torch.autograd.grad(tangent, x, retain_graph=True)
    torch.testing.assert_close(torch.autograd.grad(tangent, x), torch.autograd.grad(expected, x))


@pytest.mark.parametrize("frequency", [np.float32(0.5), np.float64(0.5), np.int64(2), 2])
def test_takes_any_real_number_as_torch_does(frequency):
    """A float hyperparameter. Delete with it."""
    x, weight = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(my_op(x, weight, frequency), native(x, weight, float(frequency)))
    assert MyOp(4, frequency).frequency == float(frequency)


def test_module():
    """The module's parameters, repr and argument checks. Change with its constructor."""
    module = MyOp(5, frequency=0.5)
    assert dict(module.named_parameters()).keys() == {"weight"}
    assert module.weight.shape == (5,)
    assert repr(module) == "MyOp(features=5, frequency=0.5)"
    x = torch.randn(3, 5)
    torch.testing.assert_close(module(x), native(x, module.weight, 0.5))
    with pytest.raises(TypeError, match=r"^MyOp: features must be an int, got float"):
        MyOp(5.0)
    with pytest.raises(ValueError, match=r"^MyOp: features must be positive, got 0"):
        MyOp(0)
    rule = "dtype must be float16, bfloat16, float32 or float64"
    with pytest.raises(TypeError, match=f"^MyOp: {rule}, got torch.int64"):
        MyOp(3, dtype=torch.int64)


def test_module_weight_trains_to_a_target():
    """The weight is learnable. Delete if your op has no parameter; change the target with the math."""
    torch.manual_seed(0)
    target = torch.tensor([0.5, -1.0, 2.0])
    module = MyOp(3, frequency=0.9)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    x = torch.randn(64, 3)
    y = native(x, target, 0.9)
    for _ in range(300):
        optimizer.zero_grad()
        (module(x) - y).pow(2).mean().backward()
        optimizer.step()
    torch.testing.assert_close(module.weight.detach(), target, atol=1e-2, rtol=0)
