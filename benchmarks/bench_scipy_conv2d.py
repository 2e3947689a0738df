"""scipy_conv2d against native torch (F.conv2d with one channel), forward plus backward.

python -m benchmarks.bench_scipy_conv2d [--device cuda]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference import scipy_conv2d

from benchmarks.compare import main


def native(input, weight, bias):
    images = input.reshape(-1, 1, *input.shape[-2:])
    out = F.conv2d(images, weight[None, None], bias)
    return out.reshape(*input.shape[:-2], *out.shape[-2:])


def cases(device: str) -> dict:
    """(batch, size, kernel): float32 images size x size, a kernel x kernel weight and a bias."""
    grid = [(1, 128, 3), (1, 256, 3), (1, 256, 15), (1, 512, 31), (8, 128, 7), (32, 128, 5), (8, 256, 3), (4, 512, 15)]
    if device == "cuda":
        grid += [(1, 1024, 15), (16, 512, 31)]

    def inputs(batch, size, kernel):
        return (
            torch.randn(batch, size, size, device=device, requires_grad=True),
            torch.randn(kernel, kernel, device=device, requires_grad=True),
            torch.randn(1, device=device, requires_grad=True),
        )

    return {f"{b}x{s}x{s}, k{k}": lambda b=b, s=s, k=k: inputs(b, s, k) for b, s, k in grid}


if __name__ == "__main__":
    main(__doc__, scipy_conv2d, native, cases)
