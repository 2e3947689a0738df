"""Input checks: bad input gets a clear error that names the op, the argument, what it got and what it needs.

An op's declaration checks each argument against its schema type (`schema_taker`),
and its tensors against the rules every op shares (`check_tensors`): float, in the
first tensor's dtype and on its device, data that broadcasts. Its own `check` then
states the op's own rules with `check_image` and the like, on the arguments as the
user passed them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ._boundary import FLOAT_DTYPES
from ._opaque import Opaque

# Tuples, not unions: torch.compile before 2.10 cannot trace isinstance with a union.
_REAL_NUMBERS = (int, float, np.integer, np.floating, np.bool_)
_INTEGERS = (int, np.integer)


def check_tensor(op: str, name: str, t: Any) -> None:
    """Raises a clear TypeError unless `t` is a dense tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got layout {t.layout}")


def float_argument(op: str, name: str, value: Any) -> float:
    """`value` as a float, taken as torch's functions take a float argument: any real Python or NumPy number,
    a bool included (torch.nn.functional.elu(x, alpha=True) takes it as 1.0, and so does the dispatcher)."""
    if not isinstance(value, _REAL_NUMBERS):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{op}: {name} is too large for a float: an int of {int(value).bit_length()} bits") from None


def int_argument(op: str, name: str, value: Any) -> int:
    """`value` as an int: a Python or NumPy integer, not a bool or a float."""
    if isinstance(value, bool) or not isinstance(value, _INTEGERS):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    return int(value)


def _int_list(op: str, name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{op}: {name} must be a list or tuple of ints, got {type(value).__name__}")
    return [int_argument(op, f"{name}[{i}]", v) for i, v in enumerate(value)]


def _bool(op: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _str(op: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{op}: {name} must be a str, got {type(value).__name__}")
    return value


def _tensor(op: str, name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        check_tensor(op, name, value)
    return value


def _opaque(op: str, name: str, value: Any) -> Opaque:
    if not isinstance(value, Opaque):
        raise TypeError(
            f"{op}: {name} must be a torch_scipy_op.Opaque, got {type(value).__name__}: pass Opaque(<the object>)"
        )
    return value


# Each schema type (as torch prints it, but Opaque's) and how an argument of that type is taken.
_TAKERS = {
    "Tensor": _tensor,
    "float": float_argument,
    "int": int_argument,
    "SymInt": int_argument,
    "List[int]": _int_list,
    "List[SymInt]": _int_list,
    "bool": _bool,
    "str": _str,
    "Opaque": _opaque,
}


def schema_taker(op: str, name: str, schema_type: str) -> Callable[[str, str, Any], Any]:
    """How an argument of `schema_type` is taken: `taker(op, name, value)` checks it and gives what kernels get.

    `Optional[...]` types take None as well. A type no op can take yet is a clear error, once.
    """
    optional = schema_type.startswith("Optional[")
    inner = schema_type[len("Optional[") : -1] if optional else schema_type
    if inner not in _TAKERS:
        raise ValueError(f"{op}: argument {name} has type {schema_type}, which ops cannot take yet")
    take = _TAKERS[inner]
    return functools.partial(_optional, take) if optional else take


def _optional(take, op: str, name: str, value: Any) -> Any:
    return None if value is None else take(op, name, value)


def check_float(op: str, name: str, t: torch.Tensor) -> None:
    """Raises a clear error unless `t` is a float16, bfloat16, float32 or float64 tensor."""
    check_tensor(op, name, t)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}")


def check_image(op: str, name: str, t: torch.Tensor) -> None:
    """Raises a clear error unless `t` is a float tensor of shape (..., H, W) with H, W >= 1.

    Leading (batch) dims may be empty, as in native torch.
    """
    check_float(op, name, t)
    if t.dim() < 2:
        raise ValueError(f"{op}: {name} must have at least 2 dims (..., H, W), got shape {tuple(t.shape)}")
    if t.shape[-2] == 0 or t.shape[-1] == 0:
        raise ValueError(f"{op}: {name} must have H and W of at least 1, got shape {tuple(t.shape)}")


def check_like(op: str, name: str, t: torch.Tensor, first: str, other: torch.Tensor) -> None:
    """Raises a clear error unless `t` has the dtype and device of the op's first input."""
    if t.dtype != other.dtype:
        raise TypeError(f"{op}: {name} must have the {first}'s dtype {other.dtype}, got {t.dtype}")
    if t.device != other.device:
        raise ValueError(f"{op}: {name} must be on the {first}'s device {other.device}, got {t.device}")


def check_tensors(op: str, tensors: list[tuple[str, torch.Tensor]], data: set[str]) -> None:
    """The rules every op shares, for its tensor arguments as (name, tensor) in order.

    Each is float16, bfloat16, float32 or float64, with the first's dtype and on its
    device; the data tensors (those in `data`) broadcast with each other.
    """
    first_name, first = tensors[0]
    shape, shaped_by = None, []
    for name, t in tensors:
        if t.dtype not in FLOAT_DTYPES or t.layout != torch.strided:
            check_float(op, name, t)
        if t is not first and (t.dtype != first.dtype or t.device != first.device):
            check_like(op, name, t, first_name, first)
        if name in data:
            if shape is not None and _broadcast(shape, t.shape) is None:
                raise ValueError(
                    f"{op}: {name} must broadcast with {' and '.join(shaped_by)}'s shape {tuple(shape)}, "
                    f"got shape {tuple(t.shape)}"
                )
            shape = tuple(t.shape) if shape is None else _broadcast(shape, t.shape)
            shaped_by.append(name)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The broadcast shape of `a` and `b`, or None where they do not broadcast.

    A size of 1 that is a plain int broadcasts without a comparison: torch.export and torch.compile
    turn each comparison of a symbolic size (a dynamic batch) into a guard that would pin it.
    """
    if len(a) == len(b) and a == b:
        return a
    shape = []
    for i in range(1, max(len(a), len(b)) + 1):
        m, n = a[-i] if i <= len(a) else 1, b[-i] if i <= len(b) else 1
        if type(n) is int and n == 1:
            shape.append(m)
        elif type(m) is int and m == 1:
            shape.append(n)
        elif m != n:
            return None
        else:
            shape.append(m)
    return tuple(reversed(shape))


# ----------------------------------------------------------------------------
# Strict checks: what kernels return and do, at a cost per call
# ----------------------------------------------------------------------------

STRICT_CHECKS_VARIABLE = "TORCH_SCIPY_OP_STRICT_CHECKS"
_strict = contextvars.ContextVar("strict_checks", default=os.environ.get(STRICT_CHECKS_VARIABLE, "") not in ("", "0"))


@contextlib.contextmanager
def strict_checks(enabled: bool = True) -> Iterator[None]:
    """Within this block, every kernel call is checked at a cost: the forward's outputs against the op's fake
    on every call (not once per input signature), and every input array unchanged by the kernel, which
    catches a kernel that writes to its inputs on CuPy, whose arrays have no read-only flag.

    The environment variable TORCH_SCIPY_OP_STRICT_CHECKS=1 turns them on for a whole process; the
    contract's tests run with them on.
    """
    token = _strict.set(enabled)
    try:
        yield
    finally:
        _strict.reset(token)


def strict() -> bool:
    """Whether strict checks are on (see `strict_checks`)."""
    return _strict.get()
