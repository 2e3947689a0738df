"""`check`: the contract's core checks on one op, run without pytest's runner, for a notebook or a script."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch

from ._contract import OpContract, on_its_own


def check(
    op: Callable[..., Any],
    native: Callable[..., Any],
    samples: Iterable[dict[str, Any]],
    *,
    tolerances: dict[torch.dtype, dict[str, float]] | None = None,
) -> list[str]:
    """Checks `op` against `native` as `OpContract` does, on the CPU, and raises on the first failure.

    `op` is a public function of a declared op (`declare_op(...).public`), `native` a torch version of
    it (or a slow but obviously correct one), and `samples` OpContract's: each argument by name, a
    shape for a tensor input. The checks, in order: values and gradients on every sample, in float32
    and float64; `torch.autograd.gradcheck` on the first (reverse mode, batched gradients, and forward
    mode where the op has a jvp kernel); `torch.func.vmap` over each tensor input, and over all, against
    a loop; `torch.compile(fullgraph=True)` with static and dynamic shapes. A failure raises
    AssertionError naming the op and the check. Returns the names of the checks that ran.

    The full contract (every derivative, opcheck, export, DDP and FSDP, bad inputs) runs under pytest:
    subclass `OpContract`.
    """
    if not hasattr(op, "declared"):
        raise TypeError(f"check: op must be a function made by declare_op, got {op!r}")
    samples = tuple(samples)
    if not samples:
        raise ValueError("check: samples must hold at least one sample (a dict of the op's arguments), got none")
    attributes = {"op": staticmethod(op), "native": staticmethod(native), "samples": samples}
    contract = type("Contract", (OpContract,), {**attributes, "tolerances": dict(tolerances or {})})()
    checks: list[tuple[str, Callable[..., None]]] = [
        (f"values and gradients, sample {i}, {d}", partial(contract.test_values_and_gradients_match_native, s, d))
        for i, s in enumerate(samples)
        for d in (torch.float32, torch.float64)
    ]
    checks.append(("gradcheck", contract.test_gradcheck))
    checks += [(f"vmap over {n}", partial(contract.test_vmap_matches_a_loop, n)) for n in contract.vmapped()]
    checks += [
        (f"torch.compile, {kind} shapes", partial(contract.test_compile_fullgraph, dynamic))
        for kind, dynamic in (("static", False), ("dynamic", True))
    ]
    for name, run in checks:
        with on_its_own():
            try:
                run(device="cpu")
            except Exception as error:
                raise AssertionError(f"{contract.name}: {name}: {type(error).__name__}: {error}") from error
    return [name for name, _ in checks]
