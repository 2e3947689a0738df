"""Where one forward plus backward spends its fixed cost, layer by layer, on a small input.

Each op runs once under a dispatch mode that records its custom-op calls, and once
with `run_kernel` recording its kernels' calls. Then five depths are timed, each the
same forward plus backward with fewer layers:

    public      the public function, .backward() through the autograd engine
    _apply      the same without the declared op's argument handling and checks
    ops         the recorded kernel-op calls, replayed as the autograd.Functions make them
    run_kernel  the recorded kernel calls through the boundary (tensors in, tensors out)
    kernels     the same kernels on bare arrays: NumPy, or CuPy on CUDA

The layers are the differences. The depths take turns, round after round, and a
layer is the median over the rounds of the difference within each round: a burst of
noise, or a machine that slows down over the run, then lands on no layer. A bare
`x.sin()` forward plus backward is timed in each round too, as the yardstick.
On CUDA (with CuPy) every timing waits for the GPU, so a layer is its CPU-side cost
where the GPU keeps up, which is the floor of a small step.

python -m benchmarks.breakdown [--size 32] [--rounds 15] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable

import torch
from torch.utils import benchmark
from torch.utils._python_dispatch import TorchDispatchMode
from torch_scipy_op import _boundary, _derivatives, _kernel_ops
from torch_scipy_op.testing.benchmark import environment

import reference
from reference.bad_fft import bad_fft
from reference.my_op import my_op
from reference.scipy_conv2d import scipy_conv2d


class _RecordOps(TorchDispatchMode):
    """Records each call of this package's custom ops, with its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == reference.__name__:
            self.calls.append((func, args))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _record_kernels(calls: list):
    run_kernel = _kernel_ops.run_kernel

    def recording(kernel, *args, owned=None):
        calls.append((kernel, args, owned))
        return run_kernel(kernel, *args, owned=owned)

    _kernel_ops.run_kernel = recording
    try:
        yield
    finally:
        _kernel_ops.run_kernel = run_kernel


def _kernel_op_callers() -> dict:
    """Each kernel op's function (what `kernel_op` returned), by its operator."""
    return {f.op: f for declared in _derivatives._DECLARED.values() for f in declared.kernel_ops.values()}


def depths(public: Callable, apply: Callable, inputs: tuple, grad: torch.Tensor) -> dict[str, Callable[[], None]]:
    """One forward plus backward of `public(*inputs)` at each depth, as argument-free callables."""

    def step(function):
        return lambda: function(*inputs).backward(grad)

    with _RecordOps() as recorder:
        step(apply)()
    kernel_calls: list = []
    with _record_kernels(kernel_calls):
        step(apply)()
    callers = _kernel_op_callers()
    op_calls = [(callers[op], args) for op, args in recorder.calls]
    backend = _boundary.NUMPY if grad.is_cpu else _boundary.CUPY

    def as_array(a):
        if not isinstance(a, torch.Tensor):
            return a
        return a.detach().numpy() if grad.is_cpu else backend.xp.from_dlpack(a.detach())

    arrays = [(kernel, [as_array(a) for a in args]) for kernel, args, _ in kernel_calls]

    def ops():
        with torch.no_grad():  # as the autograd.Functions call them
            for op, args in op_calls:
                op(*args)

    def run_kernels():
        for kernel, args, owned in kernel_calls:
            _boundary.run_kernel(kernel, *args, owned=owned)

    def kernels():
        for kernel, args in arrays:
            kernel(backend, *args)

    return {
        "public": step(public),
        "_apply": step(apply),
        "ops": ops,
        "run_kernel": run_kernels,
        "kernels": kernels,
    }


def timings(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Each step's median time in µs in each of `rounds` rounds, the steps taking turns."""
    threads = torch.get_num_threads()  # the Timer's default is 1
    timers = {
        name: benchmark.Timer("step()", globals={"step": step}, num_threads=threads) for name, step in steps.items()
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, timer in timers.items():
            times[name].append(timer.blocked_autorange(min_run_time=0.05).median * 1e6)
    return times


def median_difference(times: dict[str, list[float]], outer: str, inner: str) -> float:
    return statistics.median(a - b for a, b in zip(times[outer], times[inner], strict=True))


def cases(size: int, device: str) -> dict[str, tuple[Callable, Callable, tuple]]:
    """Each reference op on a small float32 input: its public function, its Function's and inputs.

    A Function also returns the values it saves for the derivatives, which `_public` leaves out.
    """
    x = torch.randn(size, size, device=device, requires_grad=True)
    weight = torch.randn(3, 3, device=device, requires_grad=True)
    row_weight = torch.randn(size, device=device, requires_grad=True)
    inputs = {"bad_fft": (x,), "scipy_conv2d": (x, weight, None), "my_op": (x, row_weight, 0.7)}
    cases = {}
    for name, public in (("bad_fft", bad_fft), ("scipy_conv2d", scipy_conv2d), ("my_op", my_op)):
        declared = public.declared
        cases[name] = (public, lambda *args, d=declared: d._public(d._apply(*args)), inputs[name])
    return cases


LAYERS = {  # layer: (outer depth, inner depth)
    "public checks": ("public", "_apply"),
    "Function + autograd engine": ("_apply", "ops"),
    "op call + checks": ("ops", "run_kernel"),
    "boundary": ("run_kernel", "kernels"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="the input's height and width")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.device == "cuda" and _boundary.CUPY is None:
        parser.error("--device cuda times the kernels on CuPy: install CuPy")
    print(f"# Fixed cost per forward + backward, {args.size}x{args.size}, {args.device}, {environment()}\n")
    x = torch.randn(args.size, args.size, device=args.device, requires_grad=True)
    columns = [*LAYERS, "kernels", "overhead", "total", "yardstick"]
    print("| op | " + " | ".join(columns) + " |\n|---" * 1 + "|---" * len(columns) + "|")
    for name, (public, apply, inputs) in cases(args.size, args.device).items():
        grad = torch.randn_like(public(*inputs))
        steps = depths(public, apply, inputs, grad)
        steps["yardstick"] = lambda: x.sin().backward(torch.ones_like(x))
        us = timings(steps, args.rounds)
        cells = [median_difference(us, outer, inner) for outer, inner in LAYERS.values()]
        cells += [statistics.median(us["kernels"]), median_difference(us, "public", "kernels")]
        cells += [statistics.median(us["public"]), statistics.median(us["yardstick"])]
        print(f"| {name} | " + " | ".join(f"{c:.1f} µs" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
