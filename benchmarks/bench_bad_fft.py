"""bad_fft against native torch (torch.fft.rfft2(x).abs()), forward plus backward.

python -m benchmarks.bench_bad_fft [--device cuda]
"""

from __future__ import annotations

import torch

from reference import bad_fft
from reference._boundary import CUPY, host_round_trip

from benchmarks.compare import compare, environment, fwd_bwd, parse_args


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


def contenders(device: str) -> dict:
    steps = {"native": fwd_bwd(native), "bad_fft": fwd_bwd(bad_fft)}
    if device == "cuda" and CUPY is not None:
        steps["round trip"] = fwd_bwd(bad_fft, host_round_trip)
    return steps


if __name__ == "__main__":
    args = parse_args(__doc__)
    print(f"## bad_fft, forward + backward, {args.device}, {environment()}\n")
    compare(cases(args.device), contenders(args.device), native, min_run_time=args.min_run_time)
