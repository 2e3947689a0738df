"""Testing an op against native torch: `OpContract`, one suite that every declared op keeps, its helpers,
and `check`, the core of it without pytest.

Install with the `testing` extra (`pip install torch-scipy-op[testing]`), which brings pytest.
An op's test file declares the op into the contract::

    class TestContract(OpContract):
        op = staticmethod(my_op)
        native = staticmethod(native_my_op)
        samples = ({"x": (4, 6), "weight": (6,)},)

Its fixtures (`device`, and the settings each check runs under) come with `OpContract` and apply
to its checks only; `DEVICES` parametrizes other tests over the same devices.
"""

from ._check import check
from ._contract import BadInput, OpContract
from ._helpers import DEVICES, assert_matches, needs_cuda, needs_cupy, randn, tolerances

__all__ = [
    "DEVICES",
    "BadInput",
    "OpContract",
    "assert_matches",
    "check",
    "needs_cuda",
    "needs_cupy",
    "randn",
    "tolerances",
]
