"""Python objects as op arguments: `Opaque`, and how a schema spells its type.

An argument of schema type `Opaque` carries any Python object (a scipy.sparse matrix, a
factorisation, a filter design) to the kernels, which get the object itself. On torch with
opaque objects (torch._library.opaque_object, 2.13 and later), `Opaque` is a reference type:
torch.compile takes the object as a graph input and specialises only on its kind (its
type, and its shape and dtype where it has them), so a new object of the same kind runs the
compiled code; torch.export keeps a module's object in the program, and torch.export.save
pickles it. Older torch takes it as `Any`, which only plain eager calls may carry.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

try:  # private, and new in torch 2.13: where it is missing or moved, ops take Opaque in eager code only
    from torch._library import opaque_object
    from torch._library.fake_class_registry import FakeScriptObject
    from torch._library.opaque_object import MemberType

    # torch 2.15's names, where it has them: it takes 2.13's too, but logs a deprecation warning at each use.
    register_custom_class: Any = getattr(opaque_object, "register_custom_class", None)
    if register_custom_class is not None:
        OpaqueBase: Any = importlib.import_module("torch._custom_class_base").CustomClassBase
        REFERENCE_TYPE = "symbolic"
    else:
        register_custom_class = opaque_object.register_opaque_type
        OpaqueBase = importlib.import_module("torch._opaque_base").OpaqueBase
        REFERENCE_TYPE = "reference"
    OPAQUE_SUPPORTED = True
except (ImportError, AttributeError):
    OpaqueBase = object
    OPAQUE_SUPPORTED = False

# The first torch release whose opaque objects ops use: named in the errors of older ones.
OPAQUE_SINCE = "2.13"


class Opaque(OpaqueBase):
    """A Python object as an op's argument, which no other schema type carries.

    Wrap the object, `Opaque(matrix)`, and pass it where the schema says `Opaque`: the
    kernels get `matrix` itself, and a check or fake reads its `shape` and `dtype` (None
    where it has none). torch.compile specialises on its type, shape and dtype, not on the
    object: another matrix of the same kind runs the same compiled code. A module that
    holds one keeps it under deepcopy and pickling, outside its state_dict.
    """

    def __init__(self, value: Any):
        self.value: Any = value.value if isinstance(value, Opaque) else value
        value = self.value
        shape = getattr(value, "shape", None)
        self.shape = None if shape is None else tuple(int(n) for n in shape)
        self.dtype = getattr(value, "dtype", None)

    def __repr__(self) -> str:
        return f"Opaque({self.value!r})"


def kind(opaque: Opaque) -> list[Any]:
    """What a compiled graph, and an op's fake, may depend on: the object's type, shape and dtype."""
    return [type(opaque.value), opaque.shape, str(opaque.dtype)]


SCHEMA_TYPE = "Any"
if OPAQUE_SUPPORTED:
    register_custom_class(
        Opaque,
        typ=REFERENCE_TYPE,
        guard_fn=kind,
        members={"shape": MemberType.USE_REAL, "dtype": MemberType.USE_REAL},
    )
    SCHEMA_TYPE = f"{Opaque.__module__}.{Opaque.__qualname__}"


def real(value: Any) -> Any:
    """The Opaque that tracing hands a fake as a FakeScriptObject, or `value` itself."""
    if OPAQUE_SUPPORTED and isinstance(value, FakeScriptObject):
        return value.real_obj
    return value


def unsupported(op: str, under: str) -> RuntimeError:
    """The refusal where torch has no opaque objects, and an op gets an Opaque beyond plain eager code."""
    return RuntimeError(
        f"{op}: an Opaque argument under {under} needs torch {OPAQUE_SINCE} or newer, whose opaque objects carry "
        f"it; torch {torch.__version__} runs ops with Opaque arguments only in plain eager code"
    )
