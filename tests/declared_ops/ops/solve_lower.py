"""solve_lower: x such that tril(matrix) @ x = b, by SciPy's triangular solve.

`matrix` is a parameter of shape (n, n): only its lower triangle is read, and with
`unit_diagonal` not its diagonal either, which counts as ones. `b` is data of shape
(..., n, k). The derivatives take the output x by its name in the schema, and the op keeps it for them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op


def _solve(backend: ArrayBackend, matrix, b, unit_diagonal, trans=0):
    """tril(matrix) @ x = b (trans=0) or its transpose's (trans=1), for b of shape (..., n, k): SciPy solves
    one right-hand side matrix, so the batch becomes columns."""
    xp, (n, k), batch = backend.xp, b.shape[-2:], b.shape[:-2]
    columns = xp.moveaxis(b.reshape(-1, n, k), 0, 1).reshape(n, -1)
    x = backend.linalg.solve_triangular(
        matrix, columns, trans=trans, lower=True, unit_diagonal=unit_diagonal, check_finite=False
    )
    return xp.moveaxis(x.astype(b.dtype, copy=False).reshape(n, -1, k), 1, 0).reshape(*batch, n, k)


def _lower(xp, m, unit_diagonal):
    """The part of `m` that the op reads."""
    return xp.tril(m, -1 if unit_diagonal else 0)


def solve_lower_kernel(backend: ArrayBackend, matrix, b, unit_diagonal):
    return _solve(backend, matrix, b, unit_diagonal)


def solve_lower_backward_kernel(backend: ArrayBackend, grad, matrix, x, unit_diagonal):
    """grad_b = tril(matrix)^-T grad, grad_matrix = -tril(grad_b @ x^T) (the plumbing sums the batch)."""
    xp = backend.xp
    grad_b = _solve(backend, matrix, grad, unit_diagonal, trans=1)
    return -_lower(xp, grad_b @ xp.swapaxes(x, -1, -2), unit_diagonal), grad_b


def solve_lower_jvp_kernel(backend: ArrayBackend, matrix_tangent, b_tangent, matrix, x, unit_diagonal):
    """x' = tril(matrix)^-1 (b' - tril(matrix') @ x)."""
    moved = b_tangent - _lower(backend.xp, matrix_tangent, unit_diagonal) @ x
    return _solve(backend, matrix, moved, unit_diagonal)


def solve_lower_curvature_kernel(backend: ArrayBackend, grad, matrix_direction, b_direction, matrix, x, unit_diagonal):
    """How both gradients move: grad_b' = -L^-T L'^T grad_b, grad_matrix' = -tril(grad_b' x^T + grad_b x'^T)."""
    xp = backend.xp
    moved = _lower(xp, matrix_direction, unit_diagonal)
    grad_b = _solve(backend, matrix, grad, unit_diagonal, trans=1)
    grad_b_moved = -_solve(backend, matrix, xp.swapaxes(moved, -1, -2) @ grad_b, unit_diagonal, trans=1)
    x_moved = _solve(backend, matrix, b_direction - moved @ x, unit_diagonal)
    grad_matrix_moved = grad_b_moved @ xp.swapaxes(x, -1, -2) + grad_b @ xp.swapaxes(x_moved, -1, -2)
    return -_lower(xp, grad_matrix_moved, unit_diagonal), grad_b_moved


def _check(matrix, b, unit_diagonal):
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"solve_lower: matrix must be a square matrix (n, n), got shape {tuple(matrix.shape)}")
    n = matrix.shape[0]
    if b.dim() < 2 or b.shape[-2] != n:
        raise ValueError(f"solve_lower: b must have shape (..., {n}, k) for an ({n}, {n}) matrix, got {tuple(b.shape)}")


def _fake(matrix, b, unit_diagonal):
    """x: b's shape, which the matrix does not broadcast with."""
    return b.new_empty(b.shape)


solve_lower_declared = declare_op(
    f"{__package__}::solve_lower",
    "(Tensor matrix, Tensor b, bool unit_diagonal=False) -> Tensor x",
    forward=solve_lower_kernel,
    backward=solve_lower_backward_kernel,
    jvp=solve_lower_jvp_kernel,
    curvature=solve_lower_curvature_kernel,
    parameters=("matrix",),
    batched=True,
    check=_check,
    fake=_fake,
)


@solve_lower_declared.public
def solve_lower(matrix: Tensor, b: Tensor, unit_diagonal: bool = False) -> Tensor:
    """x such that tril(matrix) @ x = b, for a matrix of shape (n, n) and b of shape (..., n, k)."""
    return solve_lower_declared(matrix, b, unit_diagonal)


class SolveLower(nn.Module):
    """`solve_lower` with a learnable (n, n) `weight`, near the identity at first: b -> tril(weight)^-1 b."""

    def __init__(self, n: int, unit_diagonal: bool = False, *, device=None, dtype=None):
        super().__init__()
        self.unit_diagonal = unit_diagonal
        self.weight = nn.Parameter(torch.empty(n, n, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The identity, and noise of 1/n: a solve as well conditioned as the identity's, with gradients of note."""
        n = len(self.weight)
        with torch.no_grad():
            self.weight.copy_(torch.eye(n, dtype=self.weight.dtype, device=self.weight.device))
            self.weight.add_(torch.randn_like(self.weight) / n)

    def forward(self, b: Tensor) -> Tensor:
        return solve_lower(self.weight, b, self.unit_diagonal)
