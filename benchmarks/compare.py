"""Times forward plus backward of several implementations side by side, and prints ratios."""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch.utils import benchmark

from reference._boundary import CUPY, host_round_trip

Step = Callable[[tuple, list[torch.Tensor]], None]


def float_outputs(result) -> list[torch.Tensor]:
    """An op's outputs that carry gradients (not an index)."""
    return [o for o in (result if isinstance(result, tuple) else (result,)) if o.dtype.is_floating_point]


def fwd_bwd(forward: Callable[..., Any], context=contextlib.nullcontext) -> Step:
    """A step that runs `forward` on the inputs and backpropagates fixed gradients, inside `context`."""

    def step(inputs: tuple, grads: list[torch.Tensor]) -> None:
        with context():
            torch.autograd.backward(float_outputs(forward(*inputs)), grads)

    return step


def contenders(native: Callable[..., Any], op: Callable[..., Any], device: str) -> dict[str, Step]:
    """Native torch, the op, and on CUDA with CuPy the op's host round trip."""
    steps = {"native": fwd_bwd(native), op.__name__: fwd_bwd(op)}
    if device == "cuda" and CUPY is not None:
        steps["round trip"] = fwd_bwd(op, host_round_trip)
    return steps


def cases(contract, samples, device: str) -> dict[str, Callable[[], tuple]]:
    """The samples' inputs, float32 tensors that require grad, labelled by their shapes and values."""

    def label(sample) -> str:
        return ", ".join(f"{k} {'x'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in sample.items())

    return {label(s): lambda s=s: tuple(contract.args(s, torch.float32, device)) for s in samples}


def benchmark_op(contract, device: str, samples=None, min_run_time: float = 0.2, rounds: int = 7) -> dict:
    """The op of a test contract (tests/contract.py) against its `native`, on its `benchmark_samples`."""
    op, native = type(contract).op, type(contract).native
    print(f"## {op.__name__}, forward + backward, {device}, {environment()}\n")
    samples = contract.benchmark_samples if samples is None else samples
    return compare(
        cases(contract, samples, device), contenders(native, op, device), native, "native", min_run_time, rounds
    )


def main(doc: str, contract) -> None:
    """The command line of a benchmark script."""
    args = parse_args(doc)
    if args.tiny:
        benchmark_op(contract, args.device, samples=contract.samples[:1], min_run_time=1e-4, rounds=1)
    else:
        benchmark_op(contract, args.device, min_run_time=args.min_run_time)


def median_ms(step: Step, inputs: tuple, grads: list[torch.Tensor], min_run_time: float) -> float:
    timer = benchmark.Timer("step(inputs, grads)", globals={"step": step, "inputs": inputs, "grads": grads})
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def compare(
    cases: dict[str, Callable[[], tuple]],
    contenders: dict[str, Step],
    forward: Callable[..., Any],
    baseline: str = "native",
    min_run_time: float = 0.2,
    rounds: int = 7,
) -> dict[str, list[float]]:
    """Prints a Markdown table of median ms per case and each contender's time over `baseline`'s.

    `cases` maps a label to a function that makes the inputs; `forward` makes the
    outputs' shapes for the gradients. Returns each contender's ratios, one per case.
    The contenders take turns, `rounds` times; a ratio is the median of the rounds'
    ratios, each from timings taken side by side, so neither a burst of noise nor a
    machine that slows down or speeds up over the run moves it.
    """
    others = [name for name in contenders if name != baseline]
    header = [*contenders, *(f"{name}/{baseline}" for name in others)]
    print("| case | " + " | ".join(f"{h}" for h in header) + " |")
    print("|---" * (len(header) + 1) + "|")
    ratios: dict[str, list[float]] = {name: [] for name in others}
    for label, make_inputs in cases.items():
        inputs = make_inputs()
        grads = [torch.randn_like(o) for o in float_outputs(forward(*inputs))]
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, step in contenders.items():
                times[name].append(median_ms(step, inputs, grads, min_run_time / rounds))
        ms = {name: statistics.median(t) for name, t in times.items()}
        for name in others:
            ratios[name].append(statistics.median(a / b for a, b in zip(times[name], times[baseline], strict=True)))
        cells = [f"{ms[name]:.3f} ms" for name in contenders] + [f"{ratios[name][-1]:.2f}" for name in others]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    means = [f"{geometric_mean(r):.2f}" for r in ratios.values()]
    print("| geometric mean | " + " | ".join([""] * len(contenders) + means) + " |")
    worst = ", ".join(f"{name}/{baseline} {max(r):.2f}" for name, r in ratios.items())
    print(f"\nworst case: {worst}\n")
    return ratios


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def parse_args(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-run-time", type=float, default=0.2, help="seconds per measurement")
    parser.add_argument("--tiny", action="store_true", help="the tests' first sample, once: does the benchmark run?")
    return parser.parse_args()


def environment() -> str:
    import numpy
    import scipy

    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"torch {torch.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}, "
        f"{torch.get_num_threads()} threads{gpu}"
    )
