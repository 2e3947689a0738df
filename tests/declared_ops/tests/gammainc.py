"""gammainc: an input without a derivative (a, declared nondifferentiable), positive inputs (the module's through
`module_input_domain`)."""

import pytest
import torch
from torch_scipy_op.testing import OpContract

from own_ops import GammaInc, gammainc


def density(a, x):
    """dP/dx = x^(a-1) e^(-x) / Gamma(a), in torch."""
    return torch.exp((a - 1) * torch.log(x) - x - torch.lgamma(a))


class NativeGammaInc(torch.autograd.Function):
    """torch.special.gammainc, whose derivative in x torch has in reverse mode alone: here in forward mode too."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, x):
        return torch.special.gammainc(a, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        a, x = ctx.saved_tensors
        assert not ctx.needs_input_grad[0], "a has no derivative"
        return None, grad * density(a, x)

    @staticmethod
    def jvp(ctx, a_tangent, x_tangent):  # a's is zeros: a is held fixed
        a, x = ctx.saved_tensors
        return density(a, x) * x_tangent


def native(a, x):
    return NativeGammaInc.apply(a, x)


def positive(*shape):
    return lambda dtype, device: torch.rand(shape, dtype=dtype, device=device) * 3 + 0.5


class TestContract(OpContract):
    op = staticmethod(gammainc)
    native = staticmethod(native)
    samples = (
        {"a": positive(3, 4), "x": positive(3, 4)},
        {"a": positive(4), "x": positive(2, 4)},
        {"a": positive(), "x": positive(5)},
    )
    module_input_domain = staticmethod(torch.nn.functional.softplus)  # x > 0

    @staticmethod
    def module():
        return GammaInc(2.0), (4, 6, 8), lambda module, x: native(module.a, x)


def test_the_gradient_in_x_alone_where_a_requires_grad_too_and_a_clear_error_for_as():
    a = torch.rand(3, dtype=torch.float64, requires_grad=True) + 0.5
    x = torch.rand(3, dtype=torch.float64, requires_grad=True) + 0.5
    (ours,) = torch.autograd.grad(gammainc(a, x).sum(), x)
    (theirs,) = torch.autograd.grad(torch.special.gammainc(a, x).sum(), x)
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(RuntimeError, match="gammainc: backward needs the derivative in a, which the op declares"):
        torch.autograd.grad(gammainc(a, x).sum(), a)
    with pytest.raises(RuntimeError, match="not implemented"):  # native's own refusal
        torch.autograd.grad(torch.special.gammainc(a, x).sum(), a)


def test_the_module_holds_a_as_a_buffer():
    module = GammaInc(2.0)
    x = torch.rand(4) + 0.5
    torch.testing.assert_close(module(x), torch.special.gammainc(torch.tensor(2.0), x))
    assert "a" in module.state_dict()
