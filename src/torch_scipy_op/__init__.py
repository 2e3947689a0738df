"""NumPy/SciPy math as first-class PyTorch operators.

Write array kernels, declare the op once with `declare_op`, and get a `torch.library` custom op
that works with autograd (reverse, forward and higher order), `torch.compile`, `torch.export`,
`torch.func`, autocast, DDP and FSDP. `torch_scipy_op.testing` (the `testing` extra) checks an
op against a native torch version of it.

The public API is what `__all__` lists; modules whose names start with `_` are private and may
change in any release.
"""

from importlib.metadata import PackageNotFoundError, version

from ._boundary import FLOAT_DTYPES, NUMPY, ArrayBackend, host_round_trip
from ._checks import (
    STRICT_CHECKS_VARIABLE,
    check_float,
    check_image,
    check_like,
    check_tensor,
    float_argument,
    int_argument,
    strict_checks,
)
from ._op_factory import DeclaredOp, declare_op
from ._opaque import Opaque

try:
    __version__ = version("torch-scipy-op")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

__all__ = [
    "FLOAT_DTYPES",
    "NUMPY",
    "STRICT_CHECKS_VARIABLE",
    "ArrayBackend",
    "DeclaredOp",
    "Opaque",
    "__version__",
    "check_float",
    "check_image",
    "check_like",
    "check_tensor",
    "declare_op",
    "float_argument",
    "host_round_trip",
    "int_argument",
    "strict_checks",
]
