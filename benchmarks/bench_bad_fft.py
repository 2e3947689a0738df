"""bad_fft against native torch (torch.fft.rfft2(x).abs()), forward plus backward.

python -m benchmarks.bench_bad_fft [--device cuda]
"""

from __future__ import annotations

import torch

from reference import bad_fft

from benchmarks.compare import main


def native(x):
    return torch.fft.rfft2(x).abs()


def cases(device: str) -> dict:
    """(batch, size, size) float32 images, from 64x64 to 1024x1024."""
    shapes = [(batch, size, size) for size in (64, 256, 1024) for batch in (1, 4, 16)]
    if device == "cuda":
        shapes += [(32, 512, 512), (8, 2048, 2048)]
    return {
        "x".join(map(str, shape)): lambda shape=shape: (torch.randn(shape, device=device, requires_grad=True),)
        for shape in shapes
    }


if __name__ == "__main__":
    main(__doc__, bad_fft, native, cases)
