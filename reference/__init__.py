"""Canonical NumPy/SciPy ops for PyTorch, as every starter of the template generates them."""

from .bad_fft import BadFFT, BadFFTFunction, bad_fft
from .my_op import MyOp, MyOpFunction, my_op
from .scipy_conv2d import ScipyConv2d, ScipyConv2dFunction, scipy_conv2d

__all__ = [
    "BadFFT",
    "BadFFTFunction",
    "MyOp",
    "MyOpFunction",
    "ScipyConv2d",
    "ScipyConv2dFunction",
    "bad_fft",
    "my_op",
    "scipy_conv2d",
]
