"""minimal_op: the contract every op keeps (torch_scipy_op.testing.OpContract), declared for this op.

Change `native` and the samples with the op, and add `bad_inputs` for what it refuses beyond the rules every
op shares (see OpContract's attributes); tests of its own design go below the class.
"""

import torch
from torch_scipy_op.testing import OpContract

from reference.minimal_op import MinimalOp, minimal_op


def native(x):
    """A torch version of the op, or a slow but obviously correct one, that the op is compared with."""
    return torch.special.erf(x)


class TestContract(OpContract):
    op = staticmethod(minimal_op)
    native = staticmethod(native)
    # Arguments by name: a shape (a random tensor), a function (dtype, device) -> tensor, or a value.
    samples = ({"x": (4, 6)}, {"x": (2, 3, 5)}, {"x": (7,)})
    # The sizes the benchmark times: python -m benchmarks.bench_minimal_op
    benchmark_samples = tuple({"x": (b, s, s)} for b, s in [(1, 32), (8, 128), (1, 1024)])

    @staticmethod
    def module():
        """The nn.Module, its input's shape, and the module computed natively."""
        return MinimalOp(), (4, 6), lambda module, x: native(x)
