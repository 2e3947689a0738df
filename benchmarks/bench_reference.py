"""Both reference ops against native torch and the tutorial's ops, forward plus backward, in one process.

Then bad_fft once more, in a process that has run the conv2d cases, and on
the CPU each op's per-call overhead: the op's forward plus backward on
a 32x32 input, less the same kernels called on bare arrays.

python -m benchmarks.bench_reference [--device cpu] [--min-run-time 0.2]
"""

import numpy as np
import torch
from torch.utils import benchmark

from reference import bad_fft, scipy_conv2d
from reference._boundary import NUMPY
from reference.bad_fft import bad_fft_backward_kernel, bad_fft_kernel
from reference.scipy_conv2d import scipy_conv2d_kernel

from benchmarks import bench_bad_fft, bench_scipy_conv2d
from benchmarks.compare import compare, contenders, environment, fwd_bwd, parse_args
from benchmarks.tutorial_ops import tutorial_bad_fft, tutorial_scipy_conv2d


def bare_bad_fft(x, grad):
    _, spectrum = bad_fft_kernel(NUMPY, x)
    bad_fft_backward_kernel(NUMPY, grad, spectrum, x.shape[-1])


def bare_scipy_conv2d(x, weight, grad):
    kh, kw = weight.shape
    scipy_conv2d_kernel(NUMPY, x, weight)
    scipy_conv2d_kernel(NUMPY, np.pad(grad, ((kh - 1, kh - 1), (kw - 1, kw - 1))), weight[::-1, ::-1])
    scipy_conv2d_kernel(NUMPY, x, grad)


def median_us(stmt: str, **names) -> float:
    return benchmark.Timer(stmt, globals=names).blocked_autorange(min_run_time=0.5).median * 1e6


def print_overheads() -> None:
    x, weight = torch.randn(32, 32, requires_grad=True), torch.randn(3, 3, requires_grad=True)
    fft_grad, conv_grad = torch.randn(32, 17), torch.randn(30, 30)
    arrays = {"x": x.detach().numpy(), "w": weight.detach().numpy()}
    rows = {
        "bad_fft": (
            median_us("op(x).backward(g)", op=bad_fft, x=x, g=fft_grad),
            median_us("bare(x, g)", bare=bare_bad_fft, g=fft_grad.numpy(), **arrays),
        ),
        "scipy_conv2d": (
            median_us("op(x, w).backward(g)", op=scipy_conv2d, x=x, w=weight, g=conv_grad),
            median_us("bare(x, w, g)", bare=bare_scipy_conv2d, g=conv_grad.numpy(), **arrays),
        ),
    }
    print("## Per-call overhead, forward + backward on 32x32\n")
    print("| op | op | bare kernels | overhead |\n|---|---|---|---|")
    for name, (op_us, bare_us) in rows.items():
        print(f"| {name} | {op_us:.0f} µs | {bare_us:.0f} µs | {op_us - bare_us:.0f} µs |")


if __name__ == "__main__":
    args = parse_args(__doc__)
    print(f"# Reference ops, forward + backward, {args.device}, {environment()}\n")
    ops = ((bad_fft, bench_bad_fft, tutorial_bad_fft), (scipy_conv2d, bench_scipy_conv2d, tutorial_scipy_conv2d))
    for op, bench, tutorial in ops:
        steps = contenders(bench.native, op, args.device)
        if args.device == "cpu":  # the tutorial's ops are NumPy-only
            steps["tutorial"] = fwd_bwd(tutorial)
        print(f"## {op.__name__}\n")
        compare(bench.cases(args.device), steps, bench.native, min_run_time=args.min_run_time)
    # A process that has done other work (allocations, FFT plans, threads) must keep the ratios.
    print("## bad_fft again, after the scipy_conv2d cases\n")
    steps = contenders(bench_bad_fft.native, bad_fft, args.device)
    compare(bench_bad_fft.cases(args.device), steps, bench_bad_fft.native, min_run_time=args.min_run_time)
    if args.device == "cpu":
        print_overheads()
