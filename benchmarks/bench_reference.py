"""Every reference op against its raw kernels, a bare Function and native torch, at one thread and at torch's default.

Each thread setting runs in a process of its own, started with its environment: at one thread,
torch.set_num_threads(1) and OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS at 1, the same
for every contender; at the default, none of them set. Rounds and the time per measurement are fixed
here, so that two runs compare. Then bad_fft once more, in a process that has run the other cases, and
on the CPU each op's per-call overhead: the op's forward plus backward on a 32x32 input, less the same
kernels called on bare arrays.

python -m benchmarks.bench_reference [--device cpu] [--threads 1|default]
"""

import os
import subprocess
import sys

import numpy as np
import torch
from torch.utils import benchmark
from torch_scipy_op._boundary import NUMPY
from torch_scipy_op.testing.benchmark import cases, compare, contenders, environment, fwd_bwd, parse_args

from reference.bad_fft import bad_fft, bad_fft_backward_kernel, bad_fft_kernel
from reference.scipy_conv2d import scipy_conv2d, scipy_conv2d_kernel

from benchmarks.tutorial_ops import tutorial_bad_fft, tutorial_scipy_conv2d
from tests import test_bad_fft, test_my_op, test_scipy_conv2d

MIN_RUN_TIME, ROUNDS = 0.5, 9  # seconds per case and contender, and the rounds they are split into
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def bare_bad_fft(x, grad):
    _, spectrum = bad_fft_kernel(NUMPY, x)
    bad_fft_backward_kernel(NUMPY, grad, x, spectrum)


def bare_scipy_conv2d(x, weight, grad):
    kh, kw = weight.shape
    scipy_conv2d_kernel(NUMPY, x, weight)
    scipy_conv2d_kernel(NUMPY, np.pad(grad, ((kh - 1, kh - 1), (kw - 1, kw - 1))), weight[::-1, ::-1])
    scipy_conv2d_kernel(NUMPY, x, grad)


def median_us(stmt: str, min_run_time: float, **names) -> float:
    timer = benchmark.Timer(stmt, globals=names, num_threads=torch.get_num_threads())  # its default is 1
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e6


def print_overheads(min_run_time: float) -> None:
    x, weight = torch.randn(32, 32, requires_grad=True), torch.randn(3, 3, requires_grad=True)
    fft_grad, conv_grad = torch.randn(32, 17), torch.randn(30, 30)
    arrays = {"x": x.detach().numpy(), "w": weight.detach().numpy()}
    rows = {
        "bad_fft": (
            median_us("op(x).backward(g)", min_run_time, op=bad_fft, x=x, g=fft_grad),
            median_us("bare(x, g)", min_run_time, bare=bare_bad_fft, g=fft_grad.numpy(), **arrays),
        ),
        "scipy_conv2d": (
            median_us("op(x, w).backward(g)", min_run_time, op=scipy_conv2d, x=x, w=weight, g=conv_grad),
            median_us("bare(x, w, g)", min_run_time, bare=bare_scipy_conv2d, g=conv_grad.numpy(), **arrays),
        ),
    }
    print("## Per-call overhead, forward + backward on 32x32\n")
    print("| op | op | bare kernels | overhead |\n|---|---|---|---|")
    for name, (op_us, bare_us) in rows.items():
        print(f"| {name} | {op_us:.0f} µs | {bare_us:.0f} µs | {op_us - bare_us:.0f} µs |")


def in_processes(args) -> None:
    """This script once per thread setting, each in a process started with that setting's environment."""
    for threads in ("1", "default"):
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        if threads == "1":
            env |= dict.fromkeys(THREAD_VARIABLES, "1")
        command = [sys.executable, "-m", "benchmarks.bench_reference", "--device", args.device, "--threads", threads]
        subprocess.run(command + ["--tiny"] * args.tiny, env=env, check=True)


def main() -> None:
    args = parse_args(__doc__, threads=True)
    if args.threads is None:
        in_processes(args)
        return
    if args.threads == "1":
        torch.set_num_threads(1)
    # --tiny: each op's first test sample, once, at the least cost: a check that this script runs.
    min_run_time, rounds = (1e-4, 1) if args.tiny else (MIN_RUN_TIME, ROUNDS)
    print(f"# Reference ops, forward + backward, {args.device}, {environment()}\n")
    tutorials = {"bad_fft": tutorial_bad_fft, "scipy_conv2d": tutorial_scipy_conv2d}
    contracts = [test_bad_fft.TestContract(), test_scipy_conv2d.TestContract(), test_my_op.TestContract()]

    def run(contract, tutorial=None):
        op, native = type(contract).op, type(contract).native
        steps = contenders(native, op, args.device)
        if tutorial is not None:
            steps["tutorial"] = fwd_bwd(tutorial)
        pairs = [(op.__name__, "bare")] if "bare" in steps else []
        samples = contract.samples[:1] if args.tiny else contract.benchmark_samples
        compare(cases(contract, samples, args.device), steps, native, "native", min_run_time, rounds, pairs)

    for contract in contracts:
        name = type(contract).op.__name__
        print(f"## {name}\n")
        run(contract, tutorials.get(name) if args.device == "cpu" else None)  # the tutorial's ops are NumPy-only
    # A process that has done other work (allocations, FFT plans, threads) must keep the ratios.
    print("## bad_fft again, after the other ops' cases\n")
    run(contracts[0])
    if args.device == "cpu":
        print_overheads(min_run_time * 5)


if __name__ == "__main__":
    main()
