"""my_op against native torch, forward plus backward. Replace `native` along with the kernels.

python -m benchmarks.bench_my_op [--device cuda]
"""

from __future__ import annotations

import torch

from reference import my_op

from benchmarks.compare import main


def native(x, weight, frequency):
    return weight * torch.sin(frequency * x)


def cases(device: str) -> dict:
    """(batch, size, size) float32 images, from 64x64 to 1024x1024, with a weight per column."""

    def make(shape):
        x = torch.randn(shape, device=device, requires_grad=True)
        return x, torch.randn(shape[-1], device=device, requires_grad=True), 0.7

    shapes = [(1, 64, 64), (16, 64, 64), (1, 256, 256), (16, 256, 256), (4, 1024, 1024)]
    return {"x".join(map(str, shape)): lambda shape=shape: make(shape) for shape in shapes}


if __name__ == "__main__":
    main(__doc__, my_op, native, cases)
