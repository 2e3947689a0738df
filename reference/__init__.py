"""Canonical NumPy/SciPy ops for PyTorch, as every starter of the template generates them.

Each op's module is exported under the op's name, as in a generated package, so that
`import reference.<op>` gives the module; the function is `reference.<op>.<op>`.
"""

from . import bad_fft, minimal_op, my_op, scipy_conv2d
from .bad_fft import BadFFT
from .minimal_op import MinimalOp
from .my_op import MyOp
from .scipy_conv2d import ScipyConv2d

__all__ = [
    "BadFFT",
    "MinimalOp",
    "MyOp",
    "ScipyConv2d",
    "bad_fft",
    "minimal_op",
    "my_op",
    "scipy_conv2d",
]
