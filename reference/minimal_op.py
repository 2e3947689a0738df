"""MinimalOp: y = erf(x), elementwise, a short start for an op of your own.

Replace the math of the kernels below with yours, the native version in the tests with a torch
one, and the schema if the arguments change. A kernel takes what its parameters name (the op's
arguments, `grad`, `<input>_tangent`, ...) as NumPy arrays, CuPy ones on CUDA, and returns arrays.
`help(torch_scipy_op.declare_op)` gives the rules, and what else a declaration takes: second
derivatives, learnable parameters, values saved for the derivatives, checks of the input.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch_scipy_op import ArrayBackend, declare_op

# 1. Array kernels: NumPy/SciPy on the CPU, CuPy on CUDA (`backend.xp`, `backend.special`, ...).


def minimal_op_kernel(backend: ArrayBackend, x):
    """The forward: erf(x), from scipy.special (cupyx.scipy.special on CUDA)."""
    return backend.special.erf(x)


def minimal_op_backward_kernel(backend: ArrayBackend, grad, x):
    """Reverse mode: x's gradient, given the output's."""
    return grad * _slope(backend, x)


def minimal_op_jvp_kernel(backend: ArrayBackend, x_tangent, x):
    """Forward mode (optional): how the output moves when x moves by its tangent."""
    return x_tangent * _slope(backend, x)


def _slope(backend: ArrayBackend, x):
    """erf'(x) = 2/sqrt(pi) · exp(-x²)."""
    return 2 / math.sqrt(math.pi) * backend.xp.exp(-x * x)


# 2. The declaration: the schema and the kernels; torch.library, autograd and vmap come from it.
minimal_op_declared = declare_op(
    f"{__package__}::minimal_op",
    "(Tensor x) -> Tensor",
    forward=minimal_op_kernel,
    backward=minimal_op_backward_kernel,
    jvp=minimal_op_jvp_kernel,
    batched=True,  # elementwise: any leading dims are batch dims
)


# 3. Public API: the function and its nn.Module.
@minimal_op_declared.public
def minimal_op(x: Tensor) -> Tensor:
    """erf(x) of a float tensor of any shape, in its dtype (float16 and bfloat16 computed in float32)."""
    return minimal_op_declared(x)


class MinimalOp(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return minimal_op(x)
