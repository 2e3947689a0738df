"""A declared op's kernels as its kernel ops call them: bound by the names they take, their results checked.

`kernel_parameters` reads what a kernel takes and `refuse_unknown` refuses, when the op is
declared, a kernel that takes anything its role does not give. `forward_kernel` and `derivative_kernel` call a
kernel with what it names. What a kernel returns is checked against what the op declares:
the forward's outputs and saved values against the op's fake (`ForwardCheck`), each gradient
against its input's shape and each tangent against its output's (`fitted`), and a batched
kernel's outputs under vmap against the batch (`check_batched`). Each error names the op, the
kernel, what it returned and what was needed. These default checks cost about a µs a call;
`strict_checks` adds costlier ones.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._boundary import ArrayBackend, Kernel, _name
from ._checks import _broadcast, strict
from ._kernel_ops import on_meta
from ._opaque import Opaque, kind

if TYPE_CHECKING:
    from ._op_factory import DeclaredOp

_PLAIN_PARAMETER = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

# Each output's and saved value's (shape, dtype); a size the fake cannot know (data-dependent) is None.
Expected = tuple[tuple[tuple[int | None, ...], torch.dtype], ...]


def kernel_parameters(op: str, role: str, kernel: Kernel) -> list[str]:
    """The names `kernel` takes after `backend`; a TypeError that names the rule for a kernel that takes
    anything else first, or anything but plain parameters."""
    where = f"{op}: the {role} kernel {_name(kernel)}"
    try:
        parameters = list(inspect.signature(kernel).parameters.values())
    except (TypeError, ValueError):
        raise TypeError(f"{where} has no signature Python can read; a kernel names what it takes") from None
    if not parameters or parameters[0].name != "backend":
        first = f"{parameters[0].name!r}" if parameters else "nothing"
        raise TypeError(
            f"{where} takes {first} first; the first parameter must be 'backend' (the array backend), "
            "and the others name what the kernel takes"
        )
    for p in parameters:
        bound = p.kind == inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        if p.kind not in _PLAIN_PARAMETER and not bound:  # bound: a keyword that functools.partial gives
            raise TypeError(f"{where} takes {str(p)!r}; a kernel takes each value by its name, as a plain parameter")
    return [p.name for p in parameters[1:] if p.kind in _PLAIN_PARAMETER]


def refuse_unknown(op: str, role: str, kernel: Kernel, names: Sequence[str], known: Sequence[str], rule: str) -> None:
    """A TypeError that names the rule, where a kernel takes a name that its role does not give."""
    for name in names:
        if name not in known:
            raise TypeError(
                f"{op}: the {role} kernel {_name(kernel)} takes {name!r}, which is not {rule}: it may take "
                f"{', '.join(known)}"
            )


def forward_kernel(declared: DeclaredOp, kernel: Kernel, names: list[str]) -> Kernel:
    """The forward kernel on the op's arguments by position, as its kernel op calls it: each given by name."""
    positions = [[a.name for a in declared.arguments].index(n) for n in names]
    in_order = positions == list(range(len(declared.arguments)))
    count = len(declared.outputs) + len(declared.saved)
    where = f"{declared.name}: the forward kernel {_name(kernel)}"

    @functools.wraps(kernel)
    def run(backend: ArrayBackend, *args):
        results = call(where, kernel, backend, names, args if in_order else [args[i] for i in positions])
        if count > 1 and (not isinstance(results, (tuple, list)) or len(results) != count):
            got = len(results) if isinstance(results, (tuple, list)) else 1
            expected = ", ".join([*declared.outputs, *declared.saved])
            raise TypeError(f"{where} returned {got} arrays, where the op needs {count} ({expected})")
        return results

    return run


def derivative_kernel(declared: DeclaredOp, role: str, kernel: Kernel, names: list[str]) -> Kernel:
    """`kernel` as its kernel op calls it: by position, its results fitted to their targets' shapes."""
    op_names = declared.input_names[role]
    n_args, n_targets = len(op_names), declared.n_targets[role]
    # Where each argument the kernel names is among the kernel op's (None: needs_input_grad).
    positions = [None if n == "needs_input_grad" else op_names.index(n) for n in names]
    takes_needs_input_grad = None in positions
    per = "output" if role == "jvp" else "tensor input"
    result_names = declared.outputs if role == "jvp" else declared.tensors
    where = f"{declared.name}: the {role} kernel {_name(kernel)}"

    @functools.wraps(kernel)
    def run(backend: ArrayBackend, *args):
        batch = args[n_args] if len(args) > n_args else 0  # the kernel op's vmap_batch, where given
        targets = args[n_args - n_targets : n_args]
        needs_input_grad = tuple([target is not None for target in targets]) if takes_needs_input_grad else None
        results = call(where, kernel, backend, names, [needs_input_grad if i is None else args[i] for i in positions])
        if n_targets == 1 and not isinstance(results, (tuple, list)):
            results = (results,)
        if not isinstance(results, (tuple, list)) or len(results) != n_targets:
            got = f"{len(results)} values" if isinstance(results, (tuple, list)) else type(results).__name__
            raise TypeError(
                f"{where} returned {got}, where it gives one array (or None, or 0) per {per}: {n_targets} "
                f"({', '.join(result_names)})"
            )
        for first in args:  # the first array's dtype is every result's
            if isinstance(first, backend.xp.ndarray):
                break
        else:
            raise TypeError(f"{where} got no array: its kernel op needs a tensor among its arguments")
        dtype = first.dtype
        fitted_results = []
        for name, result, target in zip(result_names, results, targets, strict=True):
            if target is None:  # not wanted: an empty placeholder, as the op's schema has one Tensor per target
                fitted_results.append(backend.xp.empty((0,), dtype))
                continue
            if result is None:
                raise TypeError(f"{where} returned None for {name}, whose derivative is needed")
            shape = tuple(target)
            if getattr(result, "shape", None) != shape:
                result = fitted(backend.xp, where, name, result, shape, role != "jvp", batch)
            if result.dtype != dtype:
                _refuse_lossy_cast(backend.xp, where, name, result.dtype, dtype)
                result = result.astype(dtype)
            fitted_results.append(result)
        return fitted_results[0] if n_targets == 1 else tuple(fitted_results)

    return run


def _refuse_lossy_cast(xp, where: str, name: str, got, dtype) -> None:
    """A derivative in a less precise float dtype than the op's (float32 for a float64 op), or a complex one,
    is refused, as a forward result of the wrong dtype is: cast to the op's dtype, it would lose digits or its
    imaginary part without an error. A more precise one (NumPy promoted to float64) is cast."""
    if got.kind in "fc" and (got.kind != dtype.kind or not xp.can_cast(dtype, got)):
        raise TypeError(
            f"{where} returned dtype {got} for {name}, where the op computes in {dtype}: a less precise or complex "
            f"derivative, cast to {dtype}, would lose digits or its imaginary part; compute it in {dtype}"
        )


def fitted(xp, where: str, name: str, result, shape: tuple[int, ...], may_sum: bool, batch: int = 0):
    """A derivative kernel's `result` for `name`, in `shape`.

    A gradient (`may_sum`) may keep the dims its input was broadcast over, which are summed, as
    autograd sums them; nothing is broadcast. A scalar 0 is a zero derivative; any other value of
    another shape is refused, as autograd refuses a gradient of the wrong shape. Under vmap's rule
    (`batch`, the size of the batch that leads `shape`), a result with a batch of 1 raises
    SameForEverySample: it may be the same for every sample, or a sum over the batch (a kernel
    that reduces over leading dims), and only a call per sample tells.
    """
    if not isinstance(result, (xp.ndarray, int, float, np.generic)):
        raise TypeError(f"{where} returned {type(result).__name__} for {name}, where a derivative is an array, or 0")
    array = xp.asarray(result)
    if array.shape == shape:
        return array
    if batch and array.ndim == len(shape) and array.shape[0] == 1 and shape[0] == batch:
        raise SameForEverySample
    if array.ndim == 0:
        if array == 0:
            return xp.zeros(shape, array.dtype)
        raise ValueError(
            f"{where} returned the scalar {array.item()!r} for {name}, which needs shape {shape}: "
            "only 0 stands for a whole derivative (a zero one)"
        )
    if may_sum and _broadcast(shape, array.shape) == array.shape:  # `shape` broadcasts to the result's
        extra = array.ndim - len(shape)
        array = array.sum(axis=tuple(range(extra))) if extra else array
        summed = tuple(i for i, (a, s) in enumerate(zip(array.shape, shape, strict=True)) if s == 1 and a != 1)
        return array.sum(axis=summed, keepdims=True) if summed else array
    rule = f", or a shape that {shape} broadcasts to (its broadcast dims are summed)" if may_sum else ""
    raise ValueError(f"{where} returned shape {tuple(array.shape)} for {name}, which needs shape {shape}{rule}")


class SameForEverySample(Exception):  # noqa: N818 (a signal to vmap's rule, not an error anyone sees)
    """A derivative kernel gave a result with a batch of 1 under vmap's rule: the rule runs it per sample."""


def call(where: str, kernel: Kernel, backend: ArrayBackend, names: Sequence[str], values: Sequence[Any]) -> Any:
    """`kernel(backend, *values)`, `values` being what it takes by `names`: writing to an input is an error.

    NumPy arrays of inputs are read-only (`_boundary`), so that a kernel cannot change the caller's
    tensors behind autograd's back (their version counter would not move, and a gradient would be
    computed at the changed values). CuPy arrays have no read-only flag: there, strict checks
    compare every input before and after the call.
    """
    before = [_snapshot(backend.xp, v) for v in values] if strict() else None
    try:
        results = kernel(backend, *values)
    except ValueError as error:
        if "read-only" not in str(error):
            raise
        raise ValueError(
            f"{where}: {error}. Kernels get the op's inputs as read-only arrays, so that they cannot change the "
            "caller's tensors: copy an array before changing it in place (x = x.copy()), and pass a copy to a "
            "routine that refuses read-only input"
        ) from error
    if before is not None:
        for name, value, snapshot in zip(names, values, before, strict=True):
            if snapshot is not None and not backend.xp.array_equal(_snapshot(backend.xp, value), snapshot):
                raise ValueError(
                    f"{where} changed its input {name} in place: kernels leave their inputs as they are (on CuPy "
                    "nothing stops them, and the caller's tensor changes); copy it first (x = x.copy())"
                )
    return results


def _snapshot(xp, a: Any) -> Any:
    """An input array's bytes, as a new array (so NaNs compare equal), or None for anything else."""
    if not isinstance(a, xp.ndarray):
        return None
    return xp.ascontiguousarray(a).copy().view(xp.uint8)


def _fits(shape: Sequence[int], expected: Sequence[int | None]) -> bool:
    """Whether `shape` is `expected`, whose None sizes (data-dependent ones) are any."""
    return len(shape) == len(expected) and all(e is None or n == e for n, e in zip(shape, expected, strict=True))


def _hashable(value: Any) -> Any:
    """A plain value as a key of the fake's answers: an int[] as a tuple, an Opaque as its kind."""
    if isinstance(value, Opaque):
        return tuple(kind(value))
    return tuple(value) if isinstance(value, list) else value


class ForwardCheck:
    """The forward's outputs and saved values, checked against the op's fake: each one's shape and dtype.

    Eager code would otherwise return what the kernel gives, while torch.compile and export build on
    what the fake gives. A fake answers from shapes, dtypes and plain values alone, so its answer is
    kept per call signature (the last 256); strict checks ask it on every call.
    """

    _KEPT = 256

    def __init__(self, declared: DeclaredOp, kernel: Kernel, fake: Callable[..., Any], declared_fake: bool):
        self.where = f"{declared.name}: the forward kernel {_name(kernel)}"
        self.declared_fake = declared_fake  # where the kernel disagrees with it, the op's own fake may be wrong
        self.names = (*declared.outputs, *declared.saved)
        self.n_outputs = len(declared.outputs)
        self.fake = fake
        self.op: Any = None  # the forward kernel op, once it is registered
        self.kept: dict[tuple, Expected] = {}

    def expected(self, args: Sequence[Any]) -> Expected:
        """Each output's and saved value's (shape, dtype), as the fake gives them for `args`."""
        if strict():
            return self._ask_fake(args)
        # What a fake's answer may depend on: each tensor's shape and dtype, each plain value (an int[] as a tuple).
        key = tuple([(a.shape, a.dtype) if isinstance(a, torch.Tensor) else _hashable(a) for a in args])
        expected = self.kept.get(key)
        if expected is None:
            if len(self.kept) >= self._KEPT:
                self.kept.clear()
            expected = self.kept[key] = self._ask_fake(args)
        return expected

    def _ask_fake(self, args: Sequence[Any]) -> Expected:
        try:
            results = self.fake(*[on_meta(a) for a in args])
        except Exception:  # a fake that needs fake tensors, as one of data-dependent size does (get_ctx())
            results = self._under_fake_tensors(args)
        expected = tuple(
            (tuple(d if isinstance(d, int) else None for d in r.shape), r.dtype)
            for r in (results if isinstance(results, (tuple, list)) else (results,))
        )
        for name, (_, dtype) in zip(self.names[: self.n_outputs], expected, strict=False):
            if dtype.is_complex:
                self._refuse_complex(name, dtype)
        return expected

    def _under_fake_tensors(self, args: Sequence[Any]) -> Any:
        """The kernel op on fake tensors, as torch.compile runs its fake."""
        from torch._subclasses.fake_tensor import FakeTensorMode  # private: where it moves, this raises
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        with FakeTensorMode(shape_env=ShapeEnv()) as mode:
            return self.op(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])

    def _refuse_complex(self, name: str, dtype: torch.dtype) -> None:
        raise TypeError(
            f"{self.where} gives the output {name} in {dtype}; an op's outputs are real (a saved value may be "
            "complex), so that every derivative kernel takes and gives real arrays: return the real and imaginary "
            "parts in a last dim of 2 (xp.stack([y.real, y.imag], axis=-1), and so in the fake), and have the public "
            "function return torch.view_as_complex of that output, whose derivatives torch gives"
        )

    def __call__(self, args: Sequence[Any], results: Any) -> None:
        got = results if isinstance(results, tuple) else (results,)
        expected = self.expected(args)
        if len(got) != len(expected):
            raise TypeError(f"{self.where} returned {len(got)} arrays, where the op's fake gives {len(expected)}")
        for r, (shape, dtype) in zip(got, expected, strict=True):
            if r.dtype != dtype or r.shape != shape:  # or a size the fake cannot know
                self._refuse(got, expected)

    def _refuse(self, got, expected) -> None:
        for i, (name, r, (shape, dtype)) in enumerate(zip(self.names, got, expected, strict=True)):
            if r.dtype.is_complex and i < self.n_outputs:
                self._refuse_complex(name, r.dtype)
            if r.dtype != dtype and self.declared_fake:
                raise TypeError(
                    f"{self.where} returned dtype {r.dtype} for {name}, where the op's fake gives {dtype}: cast the "
                    "result, or fix the fake (torch.compile and export take the fake's)"
                )
            if r.dtype != dtype:
                raise TypeError(
                    f"{self.where} returned dtype {r.dtype} for {name}, where the default fake gives {dtype} (the "
                    "first tensor argument's): cast the result (torch.compile and export take the fake's), or declare "
                    "a fake= that gives the kernel's dtypes"
                )
            if not _fits(r.shape, shape) and self.declared_fake:
                raise ValueError(
                    f"{self.where} returned shape {tuple(r.shape)} for {name}, where the op's fake gives "
                    f"{tuple(shape)}: fix the kernel, or the fake, whichever is wrong"
                )
            if not _fits(r.shape, shape):
                raise ValueError(
                    f"{self.where} returned shape {tuple(r.shape)} for {name}, where the default fake gives "
                    f"{tuple(shape)} (the tensor arguments' broadcast shape): declare a fake= that gives the kernel's "
                    "shapes, or fix the kernel"
                )


def check_batched(declared: DeclaredOp, batch_size: int, per_sample: Sequence[Any], results: Any) -> None:
    """Raises unless each output of a batched forward under vmap is the batch (or 1, where no vmapped argument
    reaches it) of outputs of the shape one sample's would have: a kernel that reduces over its leading dims
    is not batched."""
    expected = declared.forward_check.expected(per_sample)
    got = results if isinstance(results, tuple) else (results,)
    for name, r, (shape, _) in zip(declared.forward_check.names, got, expected, strict=False):
        if r.dim() != len(shape) + 1 or r.shape[0] not in (1, batch_size) or not _fits(r.shape[1:], shape):
            raise ValueError(
                f"{declared.forward_check.where} is declared batched=True, but under vmap over {batch_size} samples "
                f"it returned shape {tuple(r.shape)} for {name}, where the batch's is {(batch_size, *shape)} (each "
                f"sample's {tuple(shape)}, after the batch dim): a kernel that reduces over leading dims does not "
                "treat them as batch dims; leave out batched=True"
            )
