"""The two ops of the "Creating extensions using numpy and scipy" tutorial, ported to current PyTorch.

Only what current PyTorch rejects has changed: static methods and `ctx` instead
of instance methods and `Variable`. The math is the tutorial's, mistakes and
all, so that benchmarks and tests can compare against it.
"""

import numpy as np
import torch
from numpy.fft import irfft2, rfft2
from scipy.signal import convolve2d, correlate2d


class TutorialBadFFTFunction(torch.autograd.Function):
    """abs(rfft2(x)) with the tutorial's backward, irfft2(grad): not the gradient."""

    @staticmethod
    def forward(ctx, input):
        return torch.from_numpy(np.abs(rfft2(input.detach().numpy()))).to(input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return torch.from_numpy(irfft2(grad_output.numpy())).to(grad_output.dtype)


class TutorialScipyConv2dFunction(torch.autograd.Function):
    """Valid correlation of one (H, W) image, with the corrected tutorial's backward."""

    @staticmethod
    def forward(ctx, input, filter, bias):
        input, filter, bias = input.detach(), filter.detach(), bias.detach()
        result = correlate2d(input.numpy(), filter.numpy(), mode="valid") + bias.numpy()
        ctx.save_for_backward(input, filter, bias)
        return torch.as_tensor(result, dtype=input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        input, filter, bias = ctx.saved_tensors
        grad_output = grad_output.numpy()
        grad_bias = np.sum(grad_output, keepdims=True).reshape(bias.shape)
        grad_input = convolve2d(grad_output, filter.numpy(), mode="full")
        grad_filter = correlate2d(input.numpy(), grad_output, mode="valid")
        return tuple(torch.as_tensor(g, dtype=input.dtype) for g in (grad_input, grad_filter, grad_bias))


def tutorial_bad_fft(x):
    return TutorialBadFFTFunction.apply(x)


def tutorial_scipy_conv2d(input, weight, bias):
    """The tutorial's op takes one image, so a batch is a Python loop."""
    images = input.reshape(-1, *input.shape[-2:])
    out = torch.stack([TutorialScipyConv2dFunction.apply(image, weight, bias) for image in images])
    return out.reshape(*input.shape[:-2], *out.shape[-2:])
