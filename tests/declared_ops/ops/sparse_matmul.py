"""sparse_matmul: y = A x for a scipy.sparse operator A, a Python object that the op takes as an Opaque.

`operator` has shape (m, n), `x` shape (..., n), and `y` shape (..., m). The backward is the
adjoint, Aᵀ grad; the op is linear in x, so its curvature is 0.
"""

from __future__ import annotations

import scipy.sparse
import torch
from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, Opaque, declare_op


def _apply(operator, x):
    """operator @ v for each v along x's last dim, in x's dtype: SciPy takes the vectors as columns."""
    columns = x.reshape(-1, x.shape[-1]).T
    return (operator @ columns).T.astype(x.dtype, copy=False).reshape(*x.shape[:-1], operator.shape[0])


def sparse_matmul_kernel(backend: ArrayBackend, operator, x):
    return _apply(operator, x)


def sparse_matmul_backward_kernel(backend: ArrayBackend, grad, operator):
    return _apply(operator.T, grad)


def sparse_matmul_jvp_kernel(backend: ArrayBackend, x_tangent, operator):
    return _apply(operator, x_tangent)


def _check(operator, x):
    if operator.shape is None or len(operator.shape) != 2:
        raise ValueError(f"sparse_matmul: operator must be a matrix (m, n), got shape {operator.shape}")
    if x.dim() == 0 or x.shape[-1] != operator.shape[1]:
        raise ValueError(f"sparse_matmul: x must have shape (..., {operator.shape[1]}), got {tuple(x.shape)}")


def _fake(operator, x):
    return x.new_empty((*x.shape[:-1], operator.shape[0]))


sparse_matmul_declared = declare_op(
    f"{__package__}::sparse_matmul",
    "(Opaque operator, Tensor x) -> Tensor",
    forward=sparse_matmul_kernel,
    backward=sparse_matmul_backward_kernel,
    jvp=sparse_matmul_jvp_kernel,
    curvature=lambda backend: 0,
    batched=True,
    check=_check,
    fake=_fake,
)


@sparse_matmul_declared.public
def sparse_matmul(operator: Opaque, x: Tensor) -> Tensor:
    """operator @ v for each vector v along x's last dim: `Opaque(A)` of shape (m, n), x of shape (..., n)."""
    return sparse_matmul_declared(operator, x)


class SparseLinear(nn.Module):
    """x -> A x + bias: a fixed scipy.sparse operator A of shape (m, n), and a learnable bias of m.

    deepcopy and pickling (torch.save of the module) keep A, and torch.export keeps it in the
    program; the state_dict holds the bias alone.
    """

    def __init__(self, operator: scipy.sparse.sparray | scipy.sparse.spmatrix, *, device=None, dtype=None):
        super().__init__()
        self.operator = Opaque(operator)
        self.bias = nn.Parameter(torch.empty(operator.shape[0], device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return sparse_matmul(self.operator, x) + self.bias
