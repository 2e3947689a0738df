"""log_cosh: one input, no parameter, elementwise, with every derivative kernel."""

import torch
from torch_scipy_op.testing import OpContract

from own_ops import LogCosh, log_cosh


def native(x):
    return torch.log(torch.cosh(x))


class TestContract(OpContract):
    op = staticmethod(log_cosh)
    native = staticmethod(native)
    samples = ({"x": (3, 4, 5)}, {"x": ()}, {"x": (0,)}, {"x": (7,)})
    benchmark_samples = ({"x": (16, 256, 256)},)

    @staticmethod
    def module():
        return LogCosh(), (4, 6, 8), lambda module, x: native(x)


def test_large_inputs_do_not_overflow():
    x = torch.tensor([-1000.0, 1000.0], dtype=torch.float64)
    torch.testing.assert_close(log_cosh(x), x.abs() - torch.log(torch.tensor(2.0, dtype=torch.float64)))
