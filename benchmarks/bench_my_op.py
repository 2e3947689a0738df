"""my_op against native torch, forward plus backward. Replace `native` along with the kernels.

python -m benchmarks.bench_my_op [--device cuda]
"""

from __future__ import annotations

import torch

from reference import my_op
from reference._boundary import CUPY, host_round_trip

from benchmarks.compare import compare, environment, fwd_bwd, parse_args


def native(x):
    return torch.sin(x)


def cases(device: str) -> dict:
    """(batch, size, size) float32 images, from 64x64 to 1024x1024."""
    shapes = [(1, 64, 64), (16, 64, 64), (1, 256, 256), (16, 256, 256), (4, 1024, 1024)]
    return {
        "x".join(map(str, shape)): lambda shape=shape: (torch.randn(shape, device=device, requires_grad=True),)
        for shape in shapes
    }


def contenders(device: str) -> dict:
    steps = {"native": fwd_bwd(native), "my_op": fwd_bwd(my_op)}
    if device == "cuda" and CUPY is not None:
        steps["round trip"] = fwd_bwd(my_op, host_round_trip)
    return steps


if __name__ == "__main__":
    args = parse_args(__doc__)
    print(f"## my_op, forward + backward, {args.device}, {environment()}\n")
    compare(cases(args.device), contenders(args.device), native, min_run_time=args.min_run_time)
