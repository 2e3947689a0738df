"""What the tutorial got wrong is checked here, not just asserted."""

import pytest
import torch

from reference.bad_fft import bad_fft
from reference.scipy_conv2d import scipy_conv2d

from benchmarks.tutorial_ops import TutorialBadFFTFunction, tutorial_bad_fft, tutorial_scipy_conv2d


def test_tutorial_bad_fft_backward_fails_gradcheck():
    x = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(tutorial_bad_fft, (x,), raise_exception=False)
    assert torch.autograd.gradcheck(bad_fft, (x,))


def test_tutorial_bad_fft_backward_crashes_on_odd_widths():
    x = torch.randn(7, 9, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"got \[7, 8\] but expected shape compatible with \[7, 9\]"):
        TutorialBadFFTFunction.apply(x).sum().backward()
    bad_fft(x).sum().backward()
    assert x.grad.shape == (7, 9)


def test_tutorial_conv_matches_ours():
    """The benchmark's baseline computes the same thing as scipy_conv2d."""
    input = torch.randn(3, 9, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tutorial_scipy_conv2d, (input, weight, bias))
    torch.testing.assert_close(tutorial_scipy_conv2d(input, weight, bias), scipy_conv2d(input, weight, bias))
