"""MyOp: a blank op to fill with your own NumPy/SciPy math.

It shows the general case: a data tensor `x`, a learnable `weight` that broadcasts
over x's batch, a plain-float hyperparameter `frequency`, and a value (the phase)
that the forward keeps for the derivatives. Its placeholder math,

```
y = weight · sin(frequency · x)
```

is simple enough to replace in a minute, and every test passes before you change
anything. To make it yours:

1. Replace the array kernels below. Each takes what it names: the op's arguments,
   its output (`result`), the values the forward saves, `grad`, `<input>_tangent`
   or `<input>_direction`.
2. Change the declaration: the schema (the public function's signature, defaults
   included), what the forward saves, and the check. `backward` is what training
   needs; `jvp` (forward mode) and `curvature` (second derivatives) are optional:
   leave out what your op will not need, and whatever needs it raises a clear error.
   A parameter with a shape of its own (filter taps) goes in `parameters=`; outputs
   of another shape than the inputs' broadcast shape need a `fake=`.
3. Replace `native` in the tests with a torch version of your op, if one exists.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_scipy_op import FLOAT_DTYPES, ArrayBackend, declare_op, float_argument, int_argument

# ----------------------------------------------------------------------------
# 1. Array kernels: NumPy/SciPy on the host, CuPy on CUDA. No torch here.
#    `backend.xp` is numpy or cupy; `backend.ndimage`, `backend.special`, ... are
#    scipy's or cupyx.scipy's. Each kernel takes what it names (see `declare_op`).
#    Leading dims are batch dims: broadcast over them. A gradient may keep the
#    dims its input was broadcast over; the plumbing sums them.
# ----------------------------------------------------------------------------


def my_op_kernel(backend: ArrayBackend, x, weight, frequency):
    """The forward: the output, and the phase, which the derivatives use. Placeholder: weight * sin(phase)."""
    xp = backend.xp
    phase = frequency * x
    output = backend.empty(xp.broadcast_shapes(x.shape, weight.shape), x.dtype)  # the op returns it without a copy
    return xp.multiply(weight, xp.sin(phase), out=output), phase


def my_op_backward_kernel(backend: ArrayBackend, grad, weight, phase, frequency):
    """Reverse mode: the gradients for x and for weight, given the output's gradient."""
    xp = backend.xp
    grad_x = xp.multiply(grad * weight * frequency, xp.cos(phase), out=backend.empty(grad.shape, grad.dtype))
    return grad_x, grad * xp.sin(phase)


def my_op_jvp_kernel(backend: ArrayBackend, x_tangent, weight_tangent, weight, phase, frequency):
    """Forward mode: how the output moves when x and weight move by their tangents."""
    xp = backend.xp
    return weight * frequency * xp.cos(phase) * x_tangent + xp.sin(phase) * weight_tangent


def my_op_curvature_kernel(
    backend: ArrayBackend,
    grad,
    x_direction,
    weight_direction,
    weight,
    phase,
    frequency,
):
    """Second order: how the backward's two gradients move when x and weight move in a direction."""
    xp = backend.xp
    cos, sin = xp.cos(phase), xp.sin(phase)
    grad_x = grad * frequency * (cos * weight_direction - weight * frequency * sin * x_direction)
    grad_weight = grad * frequency * cos * x_direction
    return grad_x, grad_weight


# ----------------------------------------------------------------------------
# 2. The declaration: the op's schema, its kernels, its rules. The plumbing
#    (custom ops, fakes, vmap, autograd.Functions, torch.ops) comes from it.
# ----------------------------------------------------------------------------


def _fake(x, weight, frequency):
    """The output in the broadcast shape, and the phase in x's, without computing them."""
    return x.new_empty(torch.broadcast_shapes(x.shape, weight.shape)), x.new_empty(x.shape)


my_op_declared = declare_op(
    f"{__package__}::my_op",
    "(Tensor x, Tensor weight, float frequency=1.0) -> Tensor",
    forward=my_op_kernel,
    backward=my_op_backward_kernel,
    jvp=my_op_jvp_kernel,  # optional: leave out what your op will not need
    curvature=my_op_curvature_kernel,  # optional
    saved=("phase",),
    batched=True,  # the kernels treat leading dims as batch dims
    fake=_fake,  # check=...: rules of your own, beyond float tensors of one dtype and data that broadcasts
)


# ----------------------------------------------------------------------------
# 3. Public API
# ----------------------------------------------------------------------------


@my_op_declared.public
def my_op(x: Tensor, weight: Tensor, frequency: float = 1.0) -> Tensor:
    """Your op. Placeholder: weight * sin(frequency * x), for a float tensor x of any shape.

    `weight` broadcasts with x, usually over its batch; `frequency` is a plain float.
    Returns a tensor of the broadcast shape (x's, for a weight that fits in it) and
    x's dtype. float16 and bfloat16 are computed in float32; under autocast they
    give float32, and float64 stays float64.
    """
    return my_op_declared(x, weight, frequency)


class MyOp(nn.Module):
    """`my_op` with a learnable weight of shape (features,), which scales x's last dim."""

    def __init__(self, features: int, frequency: float = 1.0, *, device=None, dtype=None):
        super().__init__()
        if int_argument("MyOp", "features", features) < 1:
            raise ValueError(f"MyOp: features must be positive, got {features}")
        if dtype is not None and dtype not in FLOAT_DTYPES:
            rule = "dtype must be float16, bfloat16, float32 or float64"
            raise TypeError(f"MyOp: {rule}, got {dtype}")
        self.frequency = float_argument("MyOp", "frequency", frequency)
        self.weight = nn.Parameter(torch.empty(features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The weight's first values, as after construction: a module made on the meta device gets them here."""
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return my_op(x, self.weight, self.frequency)

    def extra_repr(self) -> str:
        return f"features={self.weight.shape[0]}, frequency={self.frequency}"
