"""solve_lower: a parameter first (a matrix), a flag that changes every derivative, and the output kept."""

import pytest
import torch
from torch_scipy_op.testing import OpContract

from own_ops import SolveLower, solve_lower


def native(matrix, b, unit_diagonal=False):
    return torch.linalg.solve_triangular(matrix.tril(), b, upper=False, unitriangular=unit_diagonal)


def well_conditioned(n):
    """An (n, n) matrix whose lower triangle is far from singular: a dominant diagonal."""
    return lambda dtype, device: (torch.randn(n, n) / n**0.5 + 2 * torch.eye(n)).to(dtype=dtype, device=device)


class TestContract(OpContract):
    op = staticmethod(solve_lower)
    native = staticmethod(native)
    samples = (
        {"matrix": well_conditioned(4), "b": (3, 4, 2)},
        {"matrix": well_conditioned(5), "b": (5, 3), "unit_diagonal": True},
        {"matrix": well_conditioned(3), "b": (2, 2, 3, 1)},
        {"matrix": well_conditioned(1), "b": (1, 1)},
    )
    bad_inputs = (
        ({"matrix": (3, 4), "b": (4, 2)}, ValueError, r"matrix must be a square matrix \(n, n\), got shape \(3, 4\)"),
        ({"matrix": (3, 3), "b": (4, 2)}, ValueError, r"b must have shape \(\.\.\., 3, k\) for an \(3, 3\) matrix"),
        ({"matrix": (3, 3), "b": (3,)}, ValueError, r"b must have shape \(\.\.\., 3, k\)"),
    )
    benchmark_samples = tuple(
        {"matrix": well_conditioned(n), "b": (batch, n, k)} for batch, n, k in [(1, 64, 8), (16, 64, 64)]
    )

    @staticmethod
    def module():
        return SolveLower(6), (4, 6, 3), lambda module, b: native(module.weight, b, module.unit_diagonal)


@pytest.mark.parametrize("unit_diagonal", [False, True])
def test_reads_only_the_lower_triangle(unit_diagonal):
    """The rest of the matrix (with unit_diagonal, its diagonal too) is never read, and gets a zero gradient."""
    matrix = well_conditioned(4)(torch.float64, "cpu").requires_grad_()
    b = torch.randn(2, 4, 3, dtype=torch.float64)
    unread = torch.triu(torch.full((4, 4), 5.0, dtype=torch.float64), 0 if unit_diagonal else 1)
    torch.testing.assert_close(
        solve_lower(matrix.detach() + unread, b, unit_diagonal), solve_lower(matrix, b, unit_diagonal)
    )
    (grad,) = torch.autograd.grad(solve_lower(matrix, b, unit_diagonal).sum(), matrix)
    assert (grad.triu(0 if unit_diagonal else 1) == 0).all()
