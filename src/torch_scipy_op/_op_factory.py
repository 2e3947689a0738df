"""The op factory: from an op's declaration (its schema and array kernels) to a PyTorch op.

`declare_op` (whose docstring states the declaration's rules) makes each kernel a kernel op
(`_kernel_ops.kernel_op`), ties them together in autograd.Functions for reverse mode, forward
mode and second order (`_derivatives`), and registers torch.ops.<namespace>.<name> with the
declared schema. Calling the declared op (the public function does) binds the defaults, takes
each argument as its schema type says, applies autocast's policy, runs the op's `check`, and
applies its Function. The Functions keep what the derivative kernels name, and the inputs that
require grad, which higher derivatives connect to.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import _dtensor
from . import _opaque as opaque
from ._boundary import Kernel
from ._checks import check_tensors, schema_taker
from ._derivatives import make_functions, refusing_forward_over_forward
from ._kernel_ops import (
    PublicFunction,
    _any_autocast_enabled,
    _plain_eager_call,
    batch_expanded,
    batch_first,
    broadcast_fake,
    function_applier,
    kernel_op,
    new_library,
    on_meta,
    once_per_sample,
    public_op,
    torch_func_state,
    torch_func_unknown,
    undefine,
)
from ._kernels import (
    ForwardCheck,
    SameForEverySample,
    check_batched,
    derivative_kernel,
    forward_kernel,
    kernel_parameters,
    refuse_unknown,
)


@dataclass(frozen=True)
class _Argument:
    name: str
    type: str  # as torch prints it: "Tensor", "Optional[Tensor]", "float", "List[int]", ...
    default: Any
    has_default: bool

    @property
    def is_tensor(self) -> bool:
        return self.type in ("Tensor", "Optional[Tensor]")

    @property
    def kernel_type(self) -> str:
        """The type as a kernel op's schema spells it."""
        optional = self.type.startswith("Optional[")
        inner = self.type[len("Optional[") : -1] if optional else self.type
        spelled = {"List[int]": "SymInt[]", "int": "SymInt", "Opaque": opaque.SCHEMA_TYPE}.get(inner, inner)
        return spelled + ("?" if optional else "")


# The names kernels get besides the op's own, which no argument, output or saved value may take.
_KERNEL_NAMES = {
    "backend": "the array backend",
    "needs_input_grad": "which gradients are wanted",
    "vmap_batch": "the batch of a derivative under vmap",
}


class DeclaredOp:
    """An op built from its declaration: call it as the public function does.

    Attributes: `name` ("my_op"), `qualname` ("package::my_op"), `schema`, `function`
    (the op's autograd.Function), `kernel_ops` (name -> the function that calls the kernel
    op; its `op` attribute is torch.ops.<namespace>.<name>_<kernel>), `op` (the public
    torch.ops.<namespace>.<name>).

    Everything a declaration says is checked before anything is registered: a declaration that
    fails leaves nothing behind, and declaring an op again replaces it.
    """

    def __init__(self, qualname, schema, *, forward, backward, jvp, curvature, saved, parameters, nondifferentiable,
                 batched, third_derivatives_are_zero, check, fake):  # fmt: skip
        self.qualname, self.schema = qualname, schema
        self.namespace, self.name = qualname.split("::")
        self.saved, self.parameters = tuple(saved), tuple(parameters)
        self.nondifferentiable = tuple(nondifferentiable)
        self.check, self.third_derivatives_are_zero, self.batched = check, third_derivatives_are_zero, batched
        self._read_schema()
        kernels = {"forward": forward, "backward": backward, "jvp": jvp, "curvature": curvature}
        self.roles = tuple(role for role in ("backward", "jvp", "curvature") if kernels[role] is not None)
        self._check_names()
        names = {role: kernel_parameters(self.name, role, kernels[role]) for role in ("forward", *self.roles)}
        self._lay_out_state(names)
        for role, taken in names.items():
            self._refuse_unknown(role, kernels[role], taken)
        # The kernels as written, and the names each takes: what the benchmark's bare contenders call.
        self.kernels = {role: k for role, k in kernels.items() if k is not None}
        self.kernel_names = names
        self.appliers: dict[str, Callable[..., Any]] = {}  # each kernel op's Function, by role: see make_functions
        self._claim_names()
        try:
            self._register(kernels, names, fake, batched)
        except BaseException:
            _CURRENT.pop(self.qualname, None)
            for qualname in self._qualnames():
                undefine(qualname)
            raise

    def _read_schema(self) -> None:
        """The arguments and outputs, from the schema."""
        # torch's spelling of the Opaque type, and back: torch prints it as PyObject (or Any, before 2.13).
        self.torch_schema = re.sub(r"\bOpaque\b", opaque.SCHEMA_TYPE, self.schema)
        parsed = torch._C.parse_schema(self.name + self.torch_schema)
        self.arguments = tuple(
            _Argument(
                a.name,
                re.sub(r"\b(PyObject|Any)\b", "Opaque", str(a.type)),
                a.default_value if a.has_default_value() else None,
                a.has_default_value(),
            )
            for a in parsed.arguments
        )
        has_opaque = any(a.type in ("Opaque", "Optional[Opaque]") for a in self.arguments)
        self.has_opaque = has_opaque
        self.eager_only = has_opaque and not opaque.OPAQUE_SUPPORTED  # see _refuse_opaque_beyond_eager
        self.outputs = tuple(r.name or "result" for r in parsed.returns)
        if len(self.outputs) > 1 and not all(r.name for r in parsed.returns):
            raise ValueError(f"{self.name}: name every output of an op with several, as in -> (Tensor a, Tensor b)")
        self._takers = tuple(schema_taker(self.name, a.name, a.type) for a in self.arguments)
        self.tensors = tuple(a.name for a in self.arguments if a.is_tensor)
        self.plain = tuple(a for a in self.arguments if not a.is_tensor)
        self.data = frozenset(self.tensors) - frozenset(self.parameters)
        self.grad_names = ("grad",) if len(self.outputs) == 1 else tuple(f"grad_{o}" for o in self.outputs)
        self.tensor_positions = tuple(i for i, a in enumerate(self.arguments) if a.is_tensor)
        self.plain_positions = tuple(i for i, a in enumerate(self.arguments) if not a.is_tensor)
        self._tensor_arguments = tuple(zip(self.tensors, self.tensor_positions, strict=True))

    def _check_names(self) -> None:
        """Each argument, output and saved value has a name of its own, which no kernel gets anything else by."""
        for what, names in (("parameters", self.parameters), ("nondifferentiable", self.nondifferentiable)):
            unknown = set(names) - set(self.tensors)
            if unknown:
                raise ValueError(f"{self.name}: {what} {sorted(unknown)} are not tensor arguments")
        self.nondifferentiable_flags = tuple(t in self.nondifferentiable for t in self.tensors)
        reserved = dict(_KERNEL_NAMES)
        reserved |= dict.fromkeys(self.grad_names, "an output's gradient")
        reserved |= {f"{t}_tangent": f"{t}'s tangent" for t in self.tensors}
        reserved |= {f"{t}_direction": f"{t}'s direction" for t in self.tensors}
        reserved |= {f"{n}_target": f"{n}'s derivative's shape" for n in (*self.tensors, *self.outputs)}
        seen: dict[str, str] = {}
        named = [("argument", a.name) for a in self.arguments]
        named += [("output", o) for o in self.outputs] + [("saved value", s) for s in self.saved]
        for kind, name in named:
            if name in seen:
                raise ValueError(
                    f"{self.name}: {name!r} names both {_a(seen[name])} and {_a(kind)}; each argument, output "
                    "and saved value needs a name of its own, which kernels take it by"
                )
            if name in reserved:
                raise ValueError(
                    f"{self.name}: the {kind} {name!r} has the name kernels get {reserved[name]} by; rename the {kind}"
                )
            seen[name] = kind

    def _refuse_unknown(self, role: str, kernel: Kernel, taken: list[str]) -> None:
        """Refuses a kernel that takes a name its role does not give (see declare_op's docstring)."""
        if role == "forward":
            refuse_unknown(
                self.name, role, kernel, taken, [a.name for a in self.arguments], "an argument of the schema"
            )
            return
        known = [*self.leading[role], *self.tensors, *self.outputs, *self.saved, *(a.name for a in self.plain)]
        if role != "jvp":  # which gradients are wanted, one bool per tensor input, as ctx.needs_input_grad
            known.append("needs_input_grad")
        refuse_unknown(self.name, role, kernel, taken, known, f"something a {role} kernel gets")

    def _lay_out_state(self, names) -> None:
        """The arguments of each derivative kernel op: what it leads with (gradients, tangents, directions), the
        state (the tensor inputs, the outputs that a derivative kernel names, which the op then keeps as native
        exp keeps its own, the saved values, the plain arguments), and the shapes of what it gives (targets)."""
        named = {n for role in self.roles for n in names[role]}
        self.kept_outputs = tuple(i for i, o in enumerate(self.outputs) if o in named)
        kept_names = tuple(self.outputs[i] for i in self.kept_outputs)
        self._state_names = (*self.tensors, *kept_names, *self.saved, *(a.name for a in self.plain))
        self.needs = named & set(self._state_names)  # the names of state that some derivative kernel takes
        self.leading = {
            "backward": [*self.grad_names],
            "jvp": [f"{n}_tangent" for n in self.tensors],
            "curvature": [*self.grad_names, *(f"{n}_direction" for n in self.tensors)],
        }
        self.targets = {
            "backward": [f"{n}_target" for n in self.tensors],
            "jvp": [f"{o}_target" for o in self.outputs],
            "curvature": [f"{n}_target" for n in self.tensors],
        }
        self.input_names = {"forward": tuple(a.name for a in self.arguments)}  # of each kernel op and Function
        for role in self.roles:
            self.input_names[role] = (*self.leading[role], *self._state_names, *self.targets[role])
        self.n_outputs, self.n_tensors, self.n_grads = len(self.outputs), len(self.tensors), len(self.grad_names)
        self.n_state = len(self._state_names)
        self.n_targets = {role: len(names) for role, names in self.targets.items()}
        # Per tensor argument of each derivative kernel op: whether it is shaped like an input
        # (a tensor input, its tangent or direction) rather than like an output (a gradient, an output, a saved
        # value).
        like_outputs = (False,) * (len(self.kept_outputs) + len(self.saved))
        inputs_then_saved = (True,) * len(self.tensors) + like_outputs + (None,) * len(self.plain)
        self.like_inputs = {
            "backward": (False,) * len(self.grad_names) + inputs_then_saved,
            "jvp": (True,) * len(self.tensors) + inputs_then_saved,
            "curvature": (False,) * len(self.grad_names) + (True,) * len(self.tensors) + inputs_then_saved,
        }
        self.kernels_take_input = tuple(name in self.needs for name in self.tensors)
        self.kernels_take_saved = tuple(name in self.needs for name in self.saved)
        # Per tensor input: its position among the arguments, whether a kernel takes it, whether it is fixed.
        self.input_layout = tuple(
            zip(self.tensor_positions, self.kernels_take_input, self.nondifferentiable_flags, strict=True)
        )
        # Per derivative kernel, the positions in the state of what it does not take.
        self.untaken = {
            role: tuple(i for i, n in enumerate(self._state_names) if n not in names[role]) for role in self.roles
        }

    def _qualnames(self) -> list[str]:
        """Every operator the op registers: its kernel ops and itself."""
        return [f"{self.qualname}_{role}" for role in ("forward", "backward", "jvp", "curvature")] + [self.qualname]

    def _claim_names(self) -> None:
        """Refuses an op whose operators another declared op has (`f_forward` is `f`'s forward kernel op)."""
        for qualname in self._qualnames():
            owner = next((d for d in _CURRENT.values() if qualname in d._qualnames()), None)
            if owner is not None and owner.qualname != self.qualname:
                raise ValueError(
                    f"{self.name}: the operator {qualname} is one that the op {owner.qualname} has registered (its "
                    "kernel ops are <op>_forward, <op>_backward, <op>_jvp and <op>_curvature); name the op otherwise"
                )

    def _register(self, kernels, names, fake, batched) -> None:
        """The kernel ops, the Functions and torch.ops.<namespace>.<name>. An op declared before by the name is
        undone, and its handle refuses further calls: its function must not mix its kernels with these."""
        replaced = _CURRENT.pop(self.qualname, None)
        if replaced is not None:
            replaced.replaced = True
            for qualname in replaced._qualnames():
                undefine(qualname)
        _CURRENT[self.qualname] = self
        returns = ", ".join(["Tensor"] * (len(self.outputs) + len(self.saved)))
        returns = f"({returns})" if "," in returns else returns
        if fake is not None and self.has_opaque:
            fake = _with_real_objects(fake)
        declared_fake = fake is not None
        fake = fake or broadcast_fake(returns)
        self.forward_check = ForwardCheck(self, kernels["forward"], fake, declared_fake)
        forward_schema = ", ".join(f"{a.kernel_type} {a.name}" for a in self.arguments)
        self.kernel_ops = {
            "forward": kernel_op(
                f"{self.qualname}_forward",
                f"({forward_schema}) -> {returns}",
                forward_kernel(self, kernels["forward"], names["forward"]),
                fake=fake,
                vmap=self._forward_vmap if batched else None,
                verify=self.forward_check,
                eager_only=self.eager_only,
            )
        }
        self.forward_check.op = self.kernel_ops["forward"].op
        state = [f"Tensor? {n}" for n in self._state_names[: self.n_state - len(self.plain)]]
        state += [f"{a.kernel_type} {a.name}" for a in self.plain]
        for role in self.roles:
            schema_args = [f"Tensor? {n}" for n in self.leading[role]] + state
            # vmap_batch: set by `_derivative_vmap`, whose targets lead with a batch of that size (see `fitted`).
            schema_args += [f"SymInt[]? {t}" for t in self.targets[role]] + ["SymInt vmap_batch=0"]
            n_targets = self.n_targets[role]
            n_before = len(self.input_names[role]) - n_targets
            self.kernel_ops[role] = kernel_op(
                f"{self.qualname}_{role}",
                f"({', '.join(schema_args)}) -> {_tensors(n_targets)}",
                derivative_kernel(self, role, kernels[role], names[role]),
                fake=functools.partial(_derivative_fake, n_before, n_targets),
                vmap=functools.partial(_derivative_vmap, self, role) if batched and not self.parameters else None,
                eager_only=self.eager_only,
            )
        self.function = make_functions(self)
        self._apply = refusing_forward_over_forward(self, function_applier(self.function))
        self.op = _register_public(self)

    def _forward_vmap(self, op, info, in_dims, *args):
        """vmap's rule for a batched forward: all at once, unless a parameter is vmapped.

        Kernels get each parameter in its own shape, so only data moves its batch dims to the front.
        """
        is_parameter = [a.name in self.parameters for a in self.arguments]
        if any(p and d is not None for p, d in zip(is_parameter, in_dims, strict=True)):
            return once_per_sample(op, info, in_dims, *args)
        data = batch_first(
            tuple(None if p else a for a, p in zip(args, is_parameter, strict=True)),
            tuple(None if p else d for d, p in zip(in_dims, is_parameter, strict=True)),
        )
        results = op(*(a if p else x for a, x, p in zip(args, data, is_parameter, strict=True)))
        one_sample = [on_meta(a, d) for a, d in zip(args, in_dims, strict=True)]
        check_batched(self, info.batch_size, one_sample, results)
        return batch_expanded(info, results)

    replaced = False  # set where the op is declared again
    direct: Callable[..., Any]  # the op's Function as plain eager code applies it, set by make_functions

    def __call__(self, *args, **kwargs):
        """The op on the user's arguments, as the public function and torch.ops call it."""
        if self.replaced:
            raise RuntimeError(
                f"{self.name} was declared again, and this is the earlier declaration: call the function of the "
                "new one (import or define it again)"
            )
        args = self.bind(args, kwargs)
        tensors = self._named_tensors(args)
        for _, t in tensors:
            if isinstance(t, _dtensor.DTENSOR):
                return _dtensor.run_sharded(self, args)
        if self.eager_only:
            self._refuse_opaque_beyond_eager()
        if _autocast_may_apply():
            args = _autocast(args)
            tensors = self._named_tensors(args)
        if tensors:
            check_tensors(self.name, tensors, self.data)
        if self.check is not None:
            self.check(*args)
        compiling = torch.compiler.is_compiling()
        if compiling and torch_func_state() is False:
            # The compiled graph holds the forward kernel op, whose autograd applies the op's Function, as
            # exported programs do. A Function that Dynamo traces itself loses its double backward silently
            # (torch.compile(backend="eager"), torch 2.13); torch.func transforms need it traced.
            return self._public(self.kernel_ops["forward"](*args))
        # In plain eager code the forward kernel op would only call its implementation: call it directly,
        # and where no derivative can be asked for (no input that requires grad), without the Function.
        if not compiling and _plain_eager_call(args, recorded=True):
            if torch.is_grad_enabled():
                for _, t in tensors:
                    if t.requires_grad:
                        return self.direct(*args)
            return self._public(self.kernel_ops["forward"].compute(*args, owned=self.n_outputs))
        return self._public(self._apply(*args))

    def _named_tensors(self, args) -> list[tuple[str, torch.Tensor]]:
        """The tensor arguments as (name, tensor), but optional ones left out (None)."""
        return [(name, args[i]) for name, i in self._tensor_arguments if args[i] is not None]

    def _refuse_opaque_beyond_eager(self) -> None:
        """Where torch has no opaque objects, an Opaque argument is carried only by plain eager calls."""
        if torch.compiler.is_compiling():
            raise opaque.unsupported(self.name, "torch.compile or torch.export")
        if torch_func_state() is not False:
            raise opaque.unsupported(self.name, "torch.func transforms")

    def bind(self, args, kwargs) -> tuple:
        """Every argument by position, each taken as its schema type says, defaults filled in."""
        if len(args) == len(self.arguments) and not kwargs:  # the public function's call
            return tuple(
                [take(self.name, a.name, v) for a, take, v in zip(self.arguments, self._takers, args, strict=True)]
            )
        if len(args) > len(self.arguments):
            raise TypeError(f"{self.name}() takes {len(self.arguments)} arguments, got {len(args)}")
        bound = []
        for i, (a, take) in enumerate(zip(self.arguments, self._takers, strict=True)):
            if i < len(args):
                value = args[i]
            elif a.name in kwargs:
                value = kwargs.pop(a.name)
            elif a.has_default:
                value = a.default
            else:
                raise TypeError(f"{self.name}() missing argument {a.name!r}")
            bound.append(take(self.name, a.name, value))
        if kwargs:
            raise TypeError(f"{self.name}() got an unexpected argument {next(iter(kwargs))!r}")
        return tuple(bound)

    def _public(self, results):
        """The public outputs of the Function's: the saved values stay behind."""
        if not isinstance(results, tuple):
            return results
        public = results[: len(self.outputs)]
        return public[0] if len(public) == 1 else public

    def public(self, function: PublicFunction) -> PublicFunction:
        """Decorates the op's public function: its signature must be the schema's, defaults included."""
        expected = [(a.name, a.default if a.has_default else inspect.Parameter.empty) for a in self.arguments]
        parameters = inspect.signature(function).parameters.values()
        got = [(p.name, p.default) for p in parameters]
        if [(n, _normal(d)) for n, d in got] != [(n, _normal(d)) for n, d in expected]:
            raise TypeError(f"{function.__name__}'s arguments {got} are not the schema's {expected}")
        public = public_op(function)
        public.declared = self  # type: ignore[attr-defined]  # what the tests' contract reads
        return public


def _with_real_objects(fake):
    """`fake`, given each Opaque itself where tracing hands it a stand-in: its kind is what compiled code guards."""

    @functools.wraps(fake)
    def with_real_objects(*args):
        return fake(*map(opaque.real, args))

    return with_real_objects


def _normal(default):
    return list(default) if isinstance(default, tuple) else default


def declare_op(
    qualname: str,
    schema: str,
    *,
    forward: Kernel,
    backward: Kernel | None = None,
    jvp: Kernel | None = None,
    curvature: Kernel | None = None,
    saved: tuple[str, ...] = (),
    parameters: tuple[str, ...] = (),
    nondifferentiable: tuple[str, ...] = (),
    batched: bool = False,
    third_derivatives_are_zero: bool = False,
    check: Callable[..., None] | None = None,
    fake: Callable[..., Any] | None = None,
) -> DeclaredOp:
    """Declares the op `qualname` ("namespace::name") with `schema`, its public signature, and its kernels.

    An op module writes its array kernels, declares the op once, and decorates its public function
    with the result's `public`; calling the result runs the op::

        my_op_declared = declare_op(
            f"{__package__}::my_op",
            "(Tensor x, Tensor weight, float frequency=1.0) -> Tensor",
            forward=my_op_kernel,
            backward=my_op_backward_kernel,
        )

        @my_op_declared.public
        def my_op(x: Tensor, weight: Tensor, frequency: float = 1.0) -> Tensor:
            return my_op_declared(x, weight, frequency)

    The schema is `torch.library`'s: `Tensor`, `Tensor?`, `float`, `int`, `int[]`, `bool`, `str`,
    with defaults, and named outputs (`-> (Tensor mean, Tensor var)`) where there are several.
    `Opaque` carries any Python object (a scipy.sparse matrix, a factorisation): the caller passes
    `Opaque(obj)`, kernels get `obj`, and a check or fake reads its `shape` and `dtype` (see
    `Opaque`: torch 2.13 or newer carries it through compile, export and torch.func; older torch
    through plain eager calls only).

    **DTensor.** An op declared `batched=True` takes DTensors on a one-dimensional mesh: data
    sharded on a batch dim (`Shard(0)`) or replicated, parameters replicated. It runs on each
    process's shard, with native's placements (a replicated weight's gradient over sharded data
    is a partial sum, `Partial()`). Other ops and placements refuse, with what to do.

    **What a kernel takes.** Kernels are plain functions of arrays (NumPy on the CPU, CuPy on CUDA)
    and plain values. The first parameter is `backend` (an `ArrayBackend`: `backend.xp` is numpy
    or cupy, `backend.special`, `backend.ndimage`, ... SciPy's or cupyx.scipy's); each other
    parameter names what the kernel takes, in any order, and may leave out what it does not need:

    - an argument of the schema, by name: a tensor as an array, a plain value as itself. This is
      all the forward kernel takes;
    - an output, by its name in the schema, or `result` for one unnamed (derivative kernels): the
      op keeps it for them, as native exp keeps its output;
    - a value the forward saved for the derivatives (`saved=`);
    - `grad` (one output) or `grad_<output>` (several): the gradient of an output (backward,
      curvature);
    - `<input>_tangent` (jvp): how a tensor input moves (zeros, where it does not);
    - `<input>_direction` (curvature): how a tensor input moves (zeros, where it does not);
    - `needs_input_grad` (backward, curvature): one bool per tensor input, whether its gradient
      is wanted, as ctx.needs_input_grad.

    A kernel that takes any other name, or `*args`, is refused when the op is declared, with an
    error that lists what that kernel may take.

    **What a kernel returns.**

    - `forward`: the outputs, then the saved values, each of the shape and dtype the fake gives
      (by default the broadcast shape of the tensor arguments, in the first one's dtype). Outputs
      are real: return a complex result as its real and imaginary parts in a last dim of 2.
    - `backward`: one gradient per tensor input, in order, of its input's shape. A gradient may
      keep the dims its input was broadcast over, which are summed; nothing is broadcast. `None`
      is for an input with no gradient (an index, an absent optional tensor, one not wanted), a
      plain `0` is a zero gradient.
    - `jvp` (forward mode): one tangent per output, of the output's shape.
    - `curvature` (second derivatives, with `jvp`): how each input's gradient moves when the
      inputs move in their directions, one per tensor input, as `backward` returns them. An op
      linear in its inputs returns 0.

    Inputs reach NumPy kernels as read-only arrays: copy one before changing it. What a kernel
    returns is checked, and a wrong result is an error that names the kernel; `strict_checks()`
    (or the environment variable `TORCH_SCIPY_OP_STRICT_CHECKS=1`) adds costlier checks on every
    call: the fake asked every time, and every input compared before and after its kernel.

    **The declaration.**

    - `forward`, `backward`, `jvp`, `curvature`: the array kernels. `backward` is what training
      needs; `jvp` gives forward mode, and with `curvature` second derivatives (double backward,
      hessian, hvp). A kernel left out is left out: whatever needs it raises one error that names
      the op, the kernel and what it gives.
    - `saved`: names of the values the forward returns after the outputs, for the derivatives.
    - `parameters`: tensor arguments with a shape of their own (filter taps, a matrix), which
      kernels always get in that shape. The other tensors are data, whose leading dims are
      batch dims; data tensors broadcast with each other.
    - `nondifferentiable`: tensor arguments the op has no derivative in (gammainc's `a`, an
      index as floats). Kernels get them as usual and return None for their gradients; a
      derivative in one raises where it is needed, as native torch raises for igamma's `a`.
    - `batched`: the kernels treat data's leading dims as batch dims, so vmap calls them once
      for the whole batch. Without it, vmap calls them once per sample, which is right for
      any kernel (one that sums over its whole input, say).
    - `third_derivatives_are_zero`: the op is linear or quadratic in its inputs (a bilinear
      op, such as a convolution with a learnable kernel): third derivatives need no kernel.
    - `check(*args)`: raises on bad input, beyond the rules every op shares (float tensors of
      one dtype and device, data that broadcasts, each argument of its schema type). It sees
      the arguments as the user passed them (under vmap, each sample's shape), after autocast.
      Start its messages with "<op>: " and name the argument, what it got and what it needs.
    - `fake(*args)`: the outputs and saved values as empty tensors, where they are not the
      broadcast shape of the tensor arguments (in the first's dtype).

    A declaration is checked before anything is registered: an argument, output or saved value
    whose name another has, or one that kernels get something else by (`backend`, `grad`,
    `needs_input_grad`, `vmap_batch`, `<input>_tangent`, ...), is refused with an error that
    names the op, the name and the rule. Declaring an op again in one process (a notebook cell
    run twice, importlib.reload) replaces it.

    Returns the `DeclaredOp`; torch.ops.<namespace>.<name> is the op with the same schema.
    """
    return DeclaredOp(
        qualname, schema, forward=forward, backward=backward, jvp=jvp, curvature=curvature, saved=saved,
        parameters=parameters, nondifferentiable=nondifferentiable, batched=batched,
        third_derivatives_are_zero=third_derivatives_are_zero,
        check=check, fake=fake,
    )  # fmt: skip


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


# Each op as it is declared now, by its qualname: what declaring it again replaces.
_CURRENT: dict[str, DeclaredOp] = {}


# ----------------------------------------------------------------------------
# The derivative kernel ops' fakes and vmap rules
# ----------------------------------------------------------------------------


def _derivative_vmap(declared: DeclaredOp, role: str, op, info, in_dims, *args):
    """vmap's rule for a derivative kernel op of a batched op without parameters: all at once where it can.

    The kernel sees the batch in front of dims lined up as `batch_first` lines them up: from the
    right, as data broadcasts. That is right for the inputs and their tangents, and for anything
    shaped like an output (gradients, saved values, the targets of a jvp) only where it has as many
    dims as the broadcast inputs; a reduction's outputs have fewer, and run once per sample.
    """
    n_targets, n_args = declared.n_targets[role], len(declared.input_names[role])
    if len(args) > n_args and args[n_args]:  # already batched by an inner vmap's rule
        return once_per_sample(op, info, in_dims, *args)
    tensors, targets = args[: n_args - n_targets], args[n_args - n_targets : n_args]
    logical = [
        t.dim() - (d is not None) if isinstance(t, torch.Tensor) else None
        for t, d in zip(tensors, in_dims[: len(tensors)], strict=True)
    ]
    like_inputs = declared.like_inputs[role]
    ndim = max((n for n, is_input in zip(logical, like_inputs, strict=True) if n is not None and is_input), default=0)
    output_ndims = [n for n, is_input in zip(logical, like_inputs, strict=True) if n is not None and not is_input]
    if role == "jvp":
        output_ndims += [len(t) for t in targets if t is not None]
    if any(n != ndim for n in output_ndims):
        return once_per_sample(op, info, in_dims, *args)
    lined_up = batch_first(tensors, in_dims[: len(tensors)])
    batch = info.batch_size
    padded = [None if t is None else [batch, *([1] * (ndim - len(t))), *t] for t in targets]
    try:
        results = op(*lined_up, *padded, batch)
    except SameForEverySample:  # a result with a batch of 1: the same for every sample, or a sum over them
        return once_per_sample(op, info, in_dims, *args)
    results = (results,) if n_targets == 1 else results
    batched = tuple(r if t is None else r.reshape(batch, *t) for r, t in zip(results, targets, strict=True))
    out_dims = tuple(None if t is None else 0 for t in targets)
    return (batched[0], out_dims[0]) if n_targets == 1 else (batched, out_dims)


def _derivative_fake(n_before: int, n_targets: int, *args):
    leading = next(a for a in args if isinstance(a, torch.Tensor))
    results = tuple(leading.new_empty((0,) if t is None else t) for t in args[n_before : n_before + n_targets])
    return results[0] if n_targets == 1 else results


def _tensors(count: int) -> str:
    """A schema's returns: `count` tensors. (Not Tensor[]: vmap's fallback, which gradcheck's batched gradients
    and torch.autograd.functional's vectorized jacobian use, takes only ops that return Tensors.)"""
    return "Tensor" if count == 1 else "(" + ", ".join(["Tensor"] * count) + ")"


# ----------------------------------------------------------------------------
# The public op
# ----------------------------------------------------------------------------


def _autocast_may_apply() -> bool:
    """False where torch's private check says no autocast is on: fast, and skipped where missing or failing."""
    if _any_autocast_enabled is None:  # tested first: torch.compile traces a call that raises, not one of None
        return True
    try:
        return bool(_any_autocast_enabled())
    except Exception:  # a private function that changed: autocast's own check decides
        return True


def _autocast(args: tuple) -> tuple:
    """Autocast's policy for the op, applied before its check: float16 and bfloat16 tensors in float32; float32
    and float64 as they are.

    That is autocast's policy for native ops that need the precision, such as the FFTs: autocast
    never casts float64 (torch.mm on float64 stays float64 under it), nor anything down.
    """
    device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), None)
    if device not in ("cpu", "cuda") or not torch.is_autocast_enabled(device):
        return args
    return tuple(a.float() if isinstance(a, torch.Tensor) and a.dtype in _HALVES else a for a in args)


_HALVES = (torch.float16, torch.bfloat16)


def _register_public(declared: DeclaredOp):
    """torch.ops.<namespace>.<name>: the declared op for every caller, eager, compiled and exported.

    torch.func's derivative transforms cannot reach an autograd.Function inside an operator
    (pytorch/pytorch#168393): there it refuses, rather than return the zero tangents that a
    custom op's own autograd would give. Under vmap alone, torch runs it once per sample.
    """

    def through_the_dispatcher(*args):
        active = torch_func_state()
        if active is None:
            raise torch_func_unknown(f"torch.ops.{declared.namespace}.{declared.name}")
        if active:
            raise RuntimeError(
                f"torch.ops.{declared.namespace}.{declared.name} does not run under torch.func transforms (grad, "
                f"jacrev, jvp, ...); call {declared.namespace}.{declared.name}, which supports them all"
            )
        # The dispatcher leaves out trailing arguments equal to their defaults: bind puts them back.
        return declared(*args)

    library = new_library(declared.qualname)
    library.define(declared.name + declared.torch_schema)
    library.impl(declared.name, through_the_dispatcher, "CompositeImplicitAutograd")
    return getattr(getattr(torch.ops, declared.namespace), declared.name).default
