"""scipy_conv2d against native torch (F.conv2d with one channel), forward plus backward.

python -m benchmarks.bench_scipy_conv2d [--device cuda]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference import scipy_conv2d
from reference._boundary import CUPY, host_round_trip

from benchmarks.compare import compare, environment, fwd_bwd, parse_args


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


def contenders(device: str) -> dict:
    steps = {"native": fwd_bwd(native), "scipy_conv2d": fwd_bwd(scipy_conv2d)}
    if device == "cuda" and CUPY is not None:
        steps["round trip"] = fwd_bwd(scipy_conv2d, host_round_trip)
    return steps


if __name__ == "__main__":
    args = parse_args(__doc__)
    print(f"## scipy_conv2d, forward + backward, {args.device}, {environment()}\n")
    compare(cases(args.device), contenders(args.device), native, min_run_time=args.min_run_time)
