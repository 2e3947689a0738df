"""Canonical NumPy/SciPy ops for PyTorch, as every starter of the template generates them."""

from .bad_fft import BadFFT, bad_fft
from .my_op import MyOp, my_op
from .scipy_conv2d import ScipyConv2d, scipy_conv2d

__all__ = [
    "BadFFT",
    "MyOp",
    "ScipyConv2d",
    "bad_fft",
    "my_op",
    "scipy_conv2d",
]
