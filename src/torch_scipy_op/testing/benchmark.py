"""Times forward plus backward of several implementations side by side, and prints ratios.

The contenders, from the floor up: `raw`, the op's own kernels on arrays (what any wrapper adds
to); `bare`, a plain autograd.Function over the same kernels, the tutorial's way (no compile,
vmap, export or forward mode, no checks); the op; and native torch. Each case runs at one thread
and at torch's default.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils import benchmark

from .._boundary import CUPY, NUMPY, host_round_trip, plain_value

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


def contenders(native: Callable[..., Any], op: Any, device: str) -> dict[str, Step]:
    """On the CPU the op's raw kernels and a bare Function over them; the op (a declared op's public function),
    native torch, and on CUDA with CuPy the op's host round trip."""
    steps: dict[str, Step] = {}
    if device == "cpu":
        steps |= {"raw": raw_kernels(op.declared), "bare": fwd_bwd(bare_function(op.declared))}
    steps |= {op.__name__: fwd_bwd(op), "native": fwd_bwd(native)}
    if device == "cuda" and CUPY is not None:
        steps["round trip"] = fwd_bwd(op, host_round_trip)
    return steps


def _kernel(declared, role: str, values: dict[str, Any]) -> Any:
    """A declared op's kernel, called on NumPy with what it names from `values`."""
    return declared.kernels[role](NUMPY, *[values[n] for n in declared.kernel_names[role]])


def _forward_values(declared, args) -> dict[str, Any]:
    """The values kernels name after the forward: its arguments (arrays for tensors), outputs and saved values."""
    arrays = [a.detach().numpy() if isinstance(a, torch.Tensor) else plain_value(a) for a in args]
    values = dict(zip([a.name for a in declared.arguments], arrays, strict=True))
    results = _kernel(declared, "forward", values)
    results = results if isinstance(results, (tuple, list)) else (results,)
    return values | dict(zip((*declared.outputs, *declared.saved), results, strict=True))


def _backward(declared, values: dict[str, Any], grads: list, needs_input_grad: tuple[bool, ...]) -> tuple:
    # One gradient per output; an output that is not float (an index) has none.
    values = values | dict(zip(declared.grad_names, grads, strict=False)) | {"needs_input_grad": needs_input_grad}
    gradients = _kernel(declared, "backward", values)
    return (gradients,) if len(declared.tensors) == 1 else tuple(gradients)


def raw_kernels(declared) -> Step:
    """The op's forward and backward kernels on arrays made before the timing: the floor of any wrapper."""
    made: dict[int, tuple] = {}

    def step(inputs: tuple, grads: list[torch.Tensor]) -> None:
        if id(inputs) not in made:  # one case's arrays, made at its first call
            made.clear()
            made[id(inputs)] = (list(inputs), [g.numpy() for g in grads])
        args, grad_arrays = made[id(inputs)]
        _backward(declared, _forward_values(declared, args), grad_arrays, (True,) * len(declared.tensors))

    return step


def bare_function(declared) -> Callable[..., Any]:
    """A plain autograd.Function over the op's forward and backward kernels, as the tutorial writes one: arrays by
    .numpy() and torch.from_numpy, gradients summed to their inputs' shapes; nothing else."""

    class Bare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            ctx.values = _forward_values(declared, args)
            ctx.shapes = [args[i].shape for i in declared.tensor_positions]
            outputs = tuple(torch.from_numpy(np.asarray(ctx.values[o])) for o in declared.outputs)
            return outputs[0] if len(outputs) == 1 else outputs

        @staticmethod
        def backward(ctx, *grads):
            wanted = tuple(ctx.needs_input_grad[i] for i in declared.tensor_positions)
            gradients = _backward(declared, ctx.values, [g.numpy() for g in grads], wanted)
            result: list[torch.Tensor | None] = [None] * len(declared.arguments)
            for i, g, shape in zip(declared.tensor_positions, gradients, ctx.shapes, strict=True):
                result[i] = None if g is None else torch.from_numpy(np.asarray(g)).sum_to_size(shape)
            return tuple(result)

    return Bare.apply


def cases(contract, samples, device: str) -> dict[str, Callable[[], tuple]]:
    """The samples' inputs, float32 tensors that require grad, labelled by their shapes and values."""

    def label(sample) -> str:
        return ", ".join(f"{k} {'x'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in sample.items())

    return {label(s): functools.partial(_inputs, contract, s, device) for s in samples}


def _inputs(contract, sample, device: str) -> tuple:
    return tuple(contract.args(sample, torch.float32, device))


def benchmark_op(contract, device: str, samples=None, min_run_time: float = 0.2, rounds: int = 7) -> None:
    """The op of a test contract (an OpContract) against its `native`, on its `benchmark_samples`, at one
    thread and at torch's default."""
    op, native = type(contract).op, type(contract).native
    samples = contract.benchmark_samples if samples is None else samples
    for threads in thread_counts():
        with torch_threads(threads):
            print(f"## {op.__name__}, forward + backward, {device}, {environment()}\n")
            steps = contenders(native, op, device)
            pairs = [(op.__name__, "bare")] if "bare" in steps else []
            compare(cases(contract, samples, device), steps, native, "native", min_run_time, rounds, pairs)


def thread_counts() -> list[int]:
    """One thread, then torch's default (where that is more)."""
    return sorted({1, torch.get_num_threads()})


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op threads, which the ops' SciPy FFT workers follow, set to `count` for the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main(doc: str, contract) -> None:
    """The command line of a benchmark script."""
    args = parse_args(doc)
    if args.tiny:
        benchmark_op(contract, args.device, samples=contract.samples[:1], min_run_time=1e-4, rounds=1)
    else:
        benchmark_op(contract, args.device, min_run_time=args.min_run_time)


def median_ms(step: Step, inputs: tuple, grads: list[torch.Tensor], min_run_time: float) -> float:
    timer = benchmark.Timer(
        "step(inputs, grads)",
        globals={"step": step, "inputs": inputs, "grads": grads},
        num_threads=torch.get_num_threads(),  # the Timer's own default is 1, whatever the process has
    )
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def compare(
    cases: dict[str, Callable[[], tuple]],
    contenders: dict[str, Step],
    forward: Callable[..., Any],
    baseline: str = "native",
    min_run_time: float = 0.2,
    rounds: int = 7,
    pairs: list[tuple[str, str]] | None = None,
) -> dict[str, list[float]]:
    """Prints a Markdown table of median ms per case and each contender's time over `baseline`'s.

    `cases` maps a label to a function that makes the inputs; `forward` makes the
    outputs' shapes for the gradients; `pairs` adds ratios of two other contenders
    ("ours/bare"). Returns each ratio ("name/baseline") by case. The contenders take
    turns, `rounds` times; a ratio is the median of the rounds' ratios, each from
    timings taken side by side, so neither a burst of noise nor a machine that slows
    down or speeds up over the run moves it.
    """
    pairs = [(name, baseline) for name in contenders if name != baseline] + list(pairs or [])
    header = [*contenders, *(f"{a}/{b}" for a, b in pairs)]
    print("| case | " + " | ".join(f"{h}" for h in header) + " |")
    print("|---" * (len(header) + 1) + "|")
    ratios: dict[str, list[float]] = {f"{a}/{b}": [] for a, b in pairs}
    for label, make_inputs in cases.items():
        inputs = make_inputs()
        grads = [torch.randn_like(o) for o in float_outputs(forward(*inputs))]
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, step in contenders.items():
                times[name].append(median_ms(step, inputs, grads, min_run_time / rounds))
        ms = {name: statistics.median(t) for name, t in times.items()}
        for a, b in pairs:
            ratios[f"{a}/{b}"].append(statistics.median(x / y for x, y in zip(times[a], times[b], strict=True)))
        cells = [f"{ms[name]:.3f} ms" for name in contenders] + [f"{r[-1]:.2f}" for r in ratios.values()]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    means = [f"{geometric_mean(r):.2f}" for r in ratios.values()]
    print("| geometric mean | " + " | ".join([""] * len(contenders) + means) + " |")
    worst = ", ".join(f"{name} {max(r):.2f}" for name, r in ratios.items())
    print(f"\nworst case: {worst}\n")
    return ratios


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def parse_args(doc: str, threads: bool = False) -> argparse.Namespace:
    """The benchmark scripts' options; `threads` adds --threads (1, or torch's default), for a script that runs each
    thread setting in a process of its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-run-time", type=float, default=0.2, help="seconds per measurement")
    parser.add_argument("--tiny", action="store_true", help="the tests' first sample, once: does the benchmark run?")
    if threads:
        parser.add_argument("--threads", choices=["1", "default"], help="one setting, in this process")
    return parser.parse_args()


def environment() -> str:
    import numpy
    import scipy

    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"torch {torch.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}, "
        f"{torch.get_num_threads()} threads{gpu}"
    )
