"""The autograd.Functions of a declared op: the op itself and its derivatives, for every autograd path.

`make_functions` builds them from a declaration (`_op_factory.DeclaredOp`): reverse mode,
forward mode, forward over reverse, double backward and hvp, each a Function whose own
derivatives are the others', so each can be differentiated again. Only what no kernel
gives raises, where it is needed, with one error that names the op and the kernel.
"""

from __future__ import annotations

import inspect
import types
from typing import TYPE_CHECKING, Any

import torch
from torch.autograd import forward_ad

from ._kernel_ops import _outside_torch_func, _plain_eager_call, _private, function_applier, torch_func_unknown

if TYPE_CHECKING:
    from ._op_factory import DeclaredOp

# What each derivative kernel gives, for the errors of an op that leaves it out.
_GIVES = {
    "backward": "reverse-mode derivatives (backward, torch.autograd.grad, torch.func.grad, jacrev, vjp)",
    "jvp": "forward-mode derivatives (torch.func.jvp, jacfwd, dual tensors) and double backward",
    "curvature": "second derivatives (double backward, hessian, hvp); an op linear in its inputs returns 0",
}


def _save(ctx, values, under_torch_func: bool, plain_eager: bool = False) -> None:
    """Keeps `values` for the derivatives: tensors as saved tensors, the rest as they are.

    Tensors are saved for forward mode too where it may come: in a dual level, or `under_torch_func`
    (where torch cannot tell, too); never in `plain_eager` code (see `_plain_eager_call`).
    """
    compiling = not plain_eager and torch.compiler.is_compiling()
    tensors: list[torch.Tensor] = []
    slots: list[tuple[Any] | None] = []  # None: the next saved tensor
    for v in values:
        if isinstance(v, torch.Tensor):
            # An inference tensor cannot be saved; a copy made outside inference mode can. (Compiled
            # code has none: torch.compile cannot trace is_inference.)
            tensors.append(v.clone() if not compiling and v.is_inference() else v)
            slots.append(None)
        else:
            slots.append((v,))
    ctx.save_for_backward(*tensors)
    if not plain_eager and (compiling or under_torch_func or _dual_level_open()):
        ctx.save_for_forward(*tensors)
    ctx.slots = slots


def _dual_level_open() -> bool:
    """Whether forward AD is on; True where torch's private level counter is missing or changed."""
    try:
        return forward_ad._current_level >= 0
    except Exception:
        return True


def _restored(ctx) -> list:
    tensors = iter(ctx.saved_tensors)
    return [next(tensors) if slot is None else slot[0] for slot in ctx.slots]


_will_engine_execute_node: Any = getattr(torch._C, "_will_engine_execute_node", None)


def _needed(ctx, indices) -> list[bool]:
    """Per input of the Function (by index), whether this backward pass uses its gradient.

    needs_input_grad says whether the input requires grad; torch.autograd.grad(outputs,
    inputs) may still leave its gradient unused (torch.autograd.functional.hvp does), and
    then a derivative that the op lacks must not raise.
    """
    needs = ctx.needs_input_grad
    if torch.compiler.is_compiling():  # compiled backward: the engine's graph is not there to ask (torch 2.9)
        return [needs[i] for i in indices]
    try:
        nodes = ctx.next_functions  # a new tuple at each read
    except Exception:  # a ctx that has none (changed): count each gradient as used
        return [needs[i] for i in indices]
    return [needs[i] and _executes(nodes, ctx.edges[i]) for i in indices]


def _executes(nodes, edge: int) -> bool:
    """Whether the engine runs the graph node of the Function's input at `edge` in this backward pass."""
    try:
        node = nodes[edge][0]
        return node is None or _will_engine_execute_node(node)
    except Exception:  # a private name missing or changed: count the gradient as used
        return True


def _edges(inputs) -> list[int | None]:
    """Each input's index among the Function's tensor inputs, as ctx.next_functions holds one edge per tensor."""
    edges, count = [], 0
    for x in inputs:
        edges.append(count if isinstance(x, torch.Tensor) else None)
        count += isinstance(x, torch.Tensor)
    return edges


def _refuse_nondifferentiable(d: DeclaredOp, moving, needed_for: str) -> None:
    """Raises where a derivative in an input the op declares nondifferentiable is asked for (`moving`: per
    tensor input, whether it is wanted, or moves by a tangent or direction), as native raises for igamma's."""
    if not d.nondifferentiable:
        return
    for name, moves, nondifferentiable in zip(d.tensors, moving, d.nondifferentiable_flags, strict=True):
        if moves and nondifferentiable:
            raise RuntimeError(
                f"{d.name}: {needed_for} needs the derivative in {name}, which the op declares nondifferentiable: "
                f"it has none. Hold {name} fixed (leave it out of what is differentiated, or detach it)"
            )


def _recording() -> bool:
    """Whether a derivative must be a Function, to be differentiated again: in reverse mode (a graph is
    being recorded), in forward mode (a dual level is open), or by torch.func."""
    return torch.is_grad_enabled() or _dual_level_open() or not _outside_torch_func()


class _Shape(tuple):
    """A derivative's shape, as a Function's input: one value, where torch.func would see a tuple of ints."""


class _Unkept:
    """A tensor input the derivatives do not keep (no kernel takes it, and it needs no gradient):
    kernel ops get None, and a tangent or direction of it is zeros of its shape."""

    def __init__(self, meta):
        self.meta = meta


def _meta(t):
    """What it takes to make zeros in place of `t`: for an input or output with no tangent or gradient."""
    return (_Shape(t.shape), t.dtype, t.device) if isinstance(t, torch.Tensor) and t.dtype.is_floating_point else None


def _complex_meta(t):
    return (_Shape(t.shape), t.dtype, t.device) if isinstance(t, torch.Tensor) and t.dtype.is_complex else None


def _filled(values, metas) -> list:
    """`values` with zeros for the Nones that stand for a float tensor's zero tangent or gradient."""
    return [
        torch.zeros(m[0], dtype=m[1], device=m[2]) if v is None and m is not None else v
        for v, m in zip(values, metas, strict=True)
    ]


def _kernel_state(state) -> list:
    return [None if isinstance(v, _Unkept) else v for v in state]


def _kernel_targets(targets) -> list:
    return [None if t is None else list(t) for t in targets]


def _spread(results, targets) -> list:
    """One entry per target: the next result where the target is set, else None."""
    results = iter(results)
    return [None if t is None else next(results) for t in targets]


def _present(values, targets) -> tuple:
    """The entries whose targets are set: a derivative Function's outputs."""
    return tuple(v for v, t in zip(values, targets, strict=True) if t is not None)


def _sum(a: list, b: list) -> list:
    return [y if x is None else x if y is None else x + y for x, y in zip(a, b, strict=True)]


# Each declaration by its key (its qualname, and how many times it was declared before). The Functions look
# their op up here, by a string: torch.compile traces them, and reads a module's globals where it could not
# read an object held in a closure. A graph recorded in eager code before an op was declared again keeps its own
# (see `kernel_op` for the dispatcher's part); a compiled one holds the operator, whose kernels are the new ones.
_DECLARED: dict[str, DeclaredOp] = {}


def _call(d: DeclaredOp, role: str, leading, state, targets, needed_for: str, plain_eager: bool = False) -> list:
    """Kernel op `role`, as its Function where it will be differentiated again: one entry per target. In
    `plain_eager` code (see `_plain_eager_call`), its implementation itself."""
    if role not in d.kernel_ops:
        raise _missing(d, role, needed_for)
    if not plain_eager and _recording():
        # Where a dual level is open, forward mode may differentiate the result (a forward-over-reverse
        # hessian), and gets native's values; torch gives no way to tell that it does (saved tensors come back
        # without their tangents, and batched ones cannot be unpacked), so the refusal is not made there.
        if torch.is_grad_enabled() and not _dual_level_open() and any(_legacy_batched(t) for t in leading):
            raise _batched_and_recorded(d)
        return _spread(d.appliers[role](*leading, *state, *targets), targets)
    state = _kernel_state(state)
    for i in d.untaken[role]:  # a tensor the kernel does not take crosses no boundary: the kernel op gets None
        if isinstance(state[i], torch.Tensor):
            state[i] = None
    # The saved tensors too, as saved_tensors_hooks gave them back (a subclass, perhaps), before the shortcut.
    direct = plain_eager and _plain_eager_call(state)
    kernel_op = d.kernel_ops[role]
    results = _as_tuple((kernel_op.compute if direct else kernel_op)(*leading, *state, *_kernel_targets(targets)))
    return [None if t is None else r for r, t in zip(results, targets, strict=True)]


_is_legacy_batched = _private("torch._C._functorch", "is_legacy_batchedtensor")


def _legacy_batched(t) -> bool:
    """Whether `t` is batched by torch.autograd.grad's is_grads_batched (torch's older vmap, not torch.func's);
    False where torch's private check is missing or changed (the refusal it serves is then not made)."""
    try:
        return isinstance(t, torch.Tensor) and bool(_is_legacy_batched(t))
    except Exception:
        return False


def _batched_and_recorded(d: DeclaredOp) -> RuntimeError:
    """The refusal of a derivative to be recorded on batched gradients: torch records no graph for a Function
    applied to them inside a backward pass, so its result would be a constant where it is differentiated
    again (a plain Function that a backward applies does the same)."""
    return RuntimeError(
        f"{d.name}: a backward pass with create_graph=True on batched gradients (torch.autograd.grad with "
        "is_grads_batched=True, torch.autograd.functional.jacobian or hessian with vectorize=True and "
        "create_graph=True) would give derivatives cut off from the graph, as torch records none for an "
        "autograd.Function applied to them; use torch.func (jacrev, hessian, vmap of vjp), or leave out "
        "is_grads_batched or vectorize"
    )


def _inputs_meta(d: DeclaredOp, state) -> list:
    """Per tensor input, what it takes to make zeros in its place; None for one the op has no derivative in,
    whose tangents and directions stay None (they would need that derivative)."""
    return [
        None if fixed else t.meta if isinstance(t, _Unkept) else _meta(t)
        for t, fixed in zip(state[: d.n_tensors], d.nondifferentiable_flags, strict=True)
    ]


def _targets(d: DeclaredOp, wanted, state, needed_for: str = "a derivative") -> list:
    _refuse_nondifferentiable(d, wanted, needed_for)
    return [m[0] if w and m is not None else None for w, m in zip(wanted, _inputs_meta(d, state), strict=True)]


def _backward(d: DeclaredOp, grads, state, wanted, needed_for: str) -> list:
    """B(g): per tensor input, its gradient where `wanted`."""
    targets = _targets(d, wanted, state, needed_for)
    if not any(t is not None for t in targets):
        return [None] * d.n_tensors
    return _call(d, "backward", grads, state, targets, needed_for)


def _curvature(d: DeclaredOp, grads, directions, state, wanted, needed_for: str) -> list:
    """C(g, d): per tensor input, how its gradient moves with the inputs, where `wanted`."""
    _refuse_nondifferentiable(d, [t is not None for t in directions], needed_for)
    targets = _targets(d, wanted, state, needed_for)
    if not any(t is not None for t in targets):
        return [None] * d.n_tensors
    directions = _filled(directions, _inputs_meta(d, state))
    return _call(d, "curvature", [*grads, *directions], state, targets, needed_for)


def _jvp(d: DeclaredOp, tangents, state, output_shapes, needed_for: str) -> list:
    """J(t): per output, its tangent where it has a shape (None for one that is not differentiable)."""
    _refuse_nondifferentiable(d, [t is not None for t in tangents], needed_for)
    return _call(d, "jvp", _filled(tangents, _inputs_meta(d, state)), state, output_shapes, needed_for)


def _second_forward(d: DeclaredOp, tangents, directions, state, output_shapes, needed_for: str) -> list:
    """d²f[t, s] per output, the second derivative in two directions, for an op quadratic in its inputs.

    Its jvp J(t) is then affine in the inputs: J(t) at inputs s, less J(t) at zero inputs, is
    d²f[t, s]. An op whose kernels take saved values or outputs cannot be evaluated at other
    inputs, and other ops have no kernel for it.
    """
    if not d.third_derivatives_are_zero or d.saved or d.kept_outputs:
        raise _beyond(d, f"forward-over-forward derivatives ({needed_for})")
    _refuse_nondifferentiable(d, [t is not None for t in directions], needed_for)
    inputs = state[: d.n_tensors]
    moved = [None if t is None or isinstance(t, _Unkept) else s for t, s in zip(inputs, directions, strict=True)]
    metas = _inputs_meta(d, state)
    present = [m if t is not None else None for t, m in zip(inputs, metas, strict=True)]

    def at(values):  # the inputs at `values`, but those the op has no derivative in, which stay fixed
        values = _filled(values, present)
        fixed = zip(inputs, values, d.nondifferentiable_flags, strict=True)
        return [t if f else v for t, v, f in fixed] + list(state[d.n_tensors :])

    at_s, at_zero = at(moved), at([None] * d.n_tensors)
    shifted = _jvp(d, tangents, at_s, output_shapes, needed_for)
    base = _jvp(d, tangents, at_zero, output_shapes, needed_for)
    return [None if a is None else a - b for a, b in zip(shifted, base, strict=True)]


def _kernel_op(d: DeclaredOp, role: str, args) -> tuple:
    """A derivative Function's forward: its kernel op on (leading tensors, state, targets)."""
    n = d.n_targets[role]
    return _present(_as_tuple(d.kernel_ops[role](*_kernel_state(args[:-n]), *_kernel_targets(args[-n:]))), args[-n:])


def _as_tuple(results) -> tuple:
    return results if isinstance(results, tuple) else (results,)


def _keep(ctx, d: DeclaredOp, role: str, inputs) -> None:
    """A derivative Function's setup_context: it keeps its leading tensors and the state, and its targets."""
    n_leading = len(inputs) - d.n_state - d.n_targets[role]
    ctx.targets = inputs[n_leading + d.n_state :]
    ctx.leading_meta = [_meta(t) for t in inputs[:n_leading]]
    ctx.edges = _edges(inputs)
    ctx.set_materialize_grads(False)  # None for what has no tangent or cotangent: not zeros to compute with
    # What zeros take in place of an output's gradient (Jvp's outputs are the op's outputs' tangents).
    like = next((t for t in inputs if isinstance(t, torch.Tensor) and t.dtype.is_floating_point), None)
    ctx.target_meta = [None if t is None or like is None else (t, like.dtype, like.device) for t in ctx.targets]
    _save(ctx, inputs[: n_leading + d.n_state], not _outside_torch_func())


def _keep_op(ctx, d: DeclaredOp, inputs, outputs: tuple, plain_eager: bool = False) -> None:
    """The op's Function's setup_context: what its derivatives need of its inputs and outputs (all of them: its
    public outputs, then its saved values). In `plain_eager` code (Direct's), its outputs are the public ones."""
    public, saved = outputs[: d.n_outputs], outputs[d.n_outputs :]
    ctx.output_meta = [_meta(o) for o in public]
    fixed = [o for o, m in zip(public, ctx.output_meta, strict=True) if m is None]
    if not plain_eager:
        fixed += saved
    if fixed:
        ctx.mark_non_differentiable(*fixed)
    ctx.set_materialize_grads(False)
    ctx.edges = _edges(inputs)
    # Under torch.func, an input that an outer transform differentiates need not require grad here.
    keep_all = not plain_eager and not _outside_torch_func()
    # Under torch.func's vmap rule for a Function (a ctx that wraps the Function's own), marking the saved
    # values non-differentiable does not reach the Function's outputs, and a None tangent for a float one
    # then fails inside torch (jvp(vmap(f)); torch 2.9 to 2.15): their tangents are zeros there.
    wrapped = keep_all and hasattr(ctx, "_pt_inner_ctx")
    ctx.saved_meta = [_meta(s) or _complex_meta(s) for s in saved] if wrapped else None
    input_meta, state = [], []
    for i, named, nondifferentiable in d.input_layout:
        t = inputs[i]
        meta = None if nondifferentiable else _meta(t)  # no derivative in it: no tangent to fill
        input_meta.append(meta)
        state.append(t if t is None or named or keep_all or t.requires_grad else _Unkept(meta))
    ctx.input_meta = input_meta
    state += [outputs[i] for i in d.kept_outputs]
    state += [s if named else None for s, named in zip(saved, d.kernels_take_saved, strict=True)]
    state += [inputs[i] for i in d.plain_positions]
    _save(ctx, state, keep_all, plain_eager)


def _gradients(ctx, d: DeclaredOp, grads, plain_eager: bool = False) -> tuple:
    """The op's backward: per argument, its gradient where this backward pass uses it (else None)."""
    grads = _filled(grads, ctx.output_meta)
    wanted = _needed(ctx, d.tensor_positions)
    _refuse_nondifferentiable(d, wanted, "backward")
    targets = [m[0] if m is not None and w else None for w, m in zip(wanted, ctx.input_meta, strict=True)]
    result = [None] * len(d.arguments)
    if any(t is not None for t in targets):
        gradients = _call(d, "backward", grads, _restored(ctx), targets, "backward", plain_eager)
        for i, g in zip(d.tensor_positions, gradients, strict=True):
            result[i] = g
    return tuple(result)


# torch's C method under autograd.Function.apply (private), and apply itself: a Python classmethod that wraps it
# before torch 2.15, a C method of its own from 2.15.
_FUNCTION_APPLY = getattr(getattr(torch._C, "_FunctionBase", None), "__dict__", {}).get("apply")
_PYTHON_APPLY = isinstance(torch.autograd.Function.__dict__.get("apply"), classmethod)


def _applier_in_c(function: type[torch.autograd.Function]) -> Any:
    """`function.apply` without torch's Python wrapper, for a Function whose forward takes ctx, in plain eager
    code. The wrapper binds arguments only for a Function with its own setup_context, and unwraps only
    tensors that torch.func wrapped, which `_plain_eager_call` refuses. Where torch's apply is in C already,
    or its C method is missing or changed: `function.apply`."""
    if not _PYTHON_APPLY or not isinstance(_FUNCTION_APPLY, types.ClassMethodDescriptorType):
        return function.apply
    return _FUNCTION_APPLY.__get__(None, function)


def make_functions(declared: DeclaredOp) -> type[torch.autograd.Function]:
    """The op's autograd.Function, and the Functions of its derivatives, which make those differentiable.

    With f the op, g its output gradients, t tangents and d directions (one per tensor input):
    - Op is f: its backward is B, its jvp is J;
    - Backward is B(g) = J^T g, linear in g;
    - Jvp is J(t) = J t, linear in t;
    - Curvature is C(g, d) = (d/dx J^T g) d, the second derivative, symmetric in d.
    Each one's derivatives are the others: B's adjoint in g is J and J's in t is B, and both
    move with the inputs by C. Only what no kernel gives raises.

    Each Function's inputs are (leading tensors, state, targets): the state is the tensor
    inputs, the saved values and the plain arguments (`_Unkept` for a tensor not kept); a
    target is the shape of a derivative to give, or None for one not wanted.
    """
    key = f"{declared.qualname}#{sum(k.startswith(declared.qualname + '#') for k in _DECLARED)}"
    _DECLARED[key] = declared

    class Op(torch.autograd.Function):
        """The op: its forward kernel, with Backward for reverse mode and Jvp for forward mode."""

        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return _DECLARED[key].kernel_ops["forward"](*args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            _keep_op(ctx, _DECLARED[key], inputs, output if isinstance(output, tuple) else (output,))

        @staticmethod
        def backward(ctx, *grads):
            d = _DECLARED[key]
            _refuse_forward_over_forward_over_reverse(d)
            return _gradients(ctx, d, grads[: d.n_outputs])

        @staticmethod
        def jvp(ctx, *tangents):
            d = _DECLARED[key]
            tangents = [tangents[i] for i in d.tensor_positions]
            _refuse_nondifferentiable(d, [t is not None for t in tangents], "forward mode")
            tangents = _filled(tangents, ctx.input_meta)
            shapes = [None if m is None else m[0] for m in ctx.output_meta]
            outputs = _call(d, "jvp", tangents, _restored(ctx), shapes, "forward mode")
            if ctx.saved_meta is None:  # a saved value has no tangent
                return tuple(outputs + [None] * len(d.saved)) if len(outputs) + len(d.saved) > 1 else outputs[0]
            zeros = [None if m is None else torch.zeros(m[0], dtype=m[1], device=m[2]) for m in ctx.saved_meta]
            return tuple(outputs + zeros)

    class Direct(Op):
        """Op as plain eager code applies it (see `DeclaredOp.__call__`): its forward kernel op's implementation
        called directly, and its public outputs alone, the saved values kept in ctx, in the kernel's own memory
        (no caller sees them). The same values and derivatives as Op's, at less cost a call. Applied only where
        `_plain_eager_call` holds for its arguments: no dual level, no torch.func transform, no wrapped tensor,
        which its setup (`_keep_op(..., plain_eager=True)`) takes for granted."""

        @staticmethod
        def forward(ctx, *args):
            d = _DECLARED[key]
            output = d.kernel_ops["forward"].compute(*args, owned=d.n_outputs)
            _keep_op(ctx, d, args, output if isinstance(output, tuple) else (output,), plain_eager=True)
            return d._public(output)

        setup_context = torch.autograd.Function.setup_context  # the base one: forward takes ctx

        @staticmethod
        def backward(ctx, *grads):
            # A backward pass in plain eager code (no graph recorded: not create_graph) calls the backward
            # kernel op's implementation itself, where its saved tensors allow it too (see `_call`); any
            # other is Op's.
            if torch.compiler.is_compiling() or torch.is_grad_enabled() or not _plain_eager_call(grads):
                return Op.backward(ctx, *grads)
            return _gradients(ctx, _DECLARED[key], grads, plain_eager=True)

    class Backward(torch.autograd.Function):
        """B(g) = J^T g, per tensor input: linear in g."""

        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return _kernel_op(_DECLARED[key], "backward", args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            _keep(ctx, _DECLARED[key], "backward", inputs)

        @staticmethod
        def backward(ctx, *cotangents):
            d = _DECLARED[key]
            saved = _restored(ctx)
            grads, state = saved[: d.n_grads], saved[d.n_grads :]
            directions = _spread(cotangents, ctx.targets)
            result = [None] * (d.n_grads + d.n_state + d.n_tensors)
            if any(_needed(ctx, range(d.n_grads))):  # B's adjoint in g is J
                shapes = [None if m is None else m[0] for m in ctx.leading_meta]
                result[: d.n_grads] = _jvp(d, directions, state, shapes, "double backward")
            wanted = _needed(ctx, range(d.n_grads, d.n_grads + d.n_tensors))  # and B moves with x by C
            result[d.n_grads : d.n_grads + d.n_tensors] = _curvature(d, grads, directions, state, wanted,
                                                                     "double backward")  # fmt: skip
            return tuple(result)

        @staticmethod
        def jvp(ctx, *tangents):
            d = _DECLARED[key]
            saved = _restored(ctx)
            grads, state = saved[: d.n_grads], saved[d.n_grads :]
            wanted = [t is not None for t in ctx.targets]
            grad_tangents, input_tangents = tangents[: d.n_grads], tangents[d.n_grads : d.n_grads + d.n_tensors]
            total = [None] * d.n_tensors
            if any(t is not None for t in grad_tangents):
                total = _backward(d, _filled(grad_tangents, ctx.leading_meta), state, wanted, "forward over reverse")
            if any(t is not None for t in input_tangents):
                total = _sum(total, _curvature(d, grads, input_tangents, state, wanted, "forward over reverse"))
            return _present(total, ctx.targets)

    class Jvp(torch.autograd.Function):
        """J(t) = J t, per output: linear in t."""

        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return _kernel_op(_DECLARED[key], "jvp", args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            _keep(ctx, _DECLARED[key], "jvp", inputs)

        @staticmethod
        def backward(ctx, *cotangents):
            d = _DECLARED[key]
            saved = _restored(ctx)
            tangents, state = saved[: d.n_tensors], saved[d.n_tensors :]
            grads = _filled(_spread(cotangents, ctx.targets), ctx.target_meta)  # kernels take every output's
            result = [None] * (d.n_tensors + d.n_state + d.n_outputs)
            wanted = _needed(ctx, range(d.n_tensors))  # J's adjoint in t is B
            result[: d.n_tensors] = _backward(d, grads, state, wanted, "reverse over forward")
            wanted = _needed(ctx, range(d.n_tensors, 2 * d.n_tensors))  # and J moves with x by C
            moved = _curvature(d, grads, tangents, state, wanted, "reverse over forward")
            result[d.n_tensors : 2 * d.n_tensors] = moved
            return tuple(result)

        @staticmethod
        def jvp(ctx, *tangents):
            d = _DECLARED[key]
            saved = _restored(ctx)
            own, state = saved[: d.n_tensors], saved[d.n_tensors :]
            total = [None] * d.n_outputs
            if any(t is not None for t in tangents[: d.n_tensors]):  # J is linear in t
                moved = _filled(tangents[: d.n_tensors], ctx.leading_meta)
                total = _jvp(d, moved, state, ctx.targets, "forward over forward")
            input_tangents = tangents[d.n_tensors : 2 * d.n_tensors]
            if any(t is not None for t in input_tangents):  # and moves with the inputs by d²f
                bend = _second_forward(d, own, input_tangents, state, ctx.targets, "forward over forward")
                total = _sum(total, bend)
            return _present(total, ctx.targets)

    class Curvature(torch.autograd.Function):
        """C(g, d), per tensor input: linear in g and in d."""

        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return _kernel_op(_DECLARED[key], "curvature", args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            _keep(ctx, _DECLARED[key], "curvature", inputs)

        @staticmethod
        def backward(ctx, *cotangents):
            d = _DECLARED[key]
            leading = d.n_grads + d.n_tensors
            saved = _restored(ctx)
            grads, state = saved[: d.n_grads], saved[leading:]
            if any(_needed(ctx, range(leading, leading + d.n_tensors))) and not d.third_derivatives_are_zero:
                raise _beyond(d, "third derivatives")
            cotangents = _spread(cotangents, ctx.targets)
            result = [None] * (leading + d.n_state + d.n_tensors)
            if any(_needed(ctx, range(d.n_grads))):  # <c, C(g, d)> = <g, d²f[c, d]>
                shapes = [None if m is None else m[0] for m in ctx.leading_meta[: d.n_grads]]
                directions = saved[d.n_grads : leading]
                result[: d.n_grads] = _second_forward(d, cotangents, directions, state, shapes, "third derivatives")
            wanted = _needed(ctx, range(d.n_grads, d.n_grads + d.n_tensors))  # C is symmetric in d
            result[d.n_grads : leading] = _curvature(d, grads, cotangents, state, wanted, "third derivatives")
            return tuple(result)

        @staticmethod
        def jvp(ctx, *tangents):
            d = _DECLARED[key]
            leading = d.n_grads + d.n_tensors
            saved = _restored(ctx)
            grads, directions, state = saved[: d.n_grads], saved[d.n_grads : leading], saved[leading:]
            moved = any(t is not None for t in tangents[leading : leading + d.n_tensors])
            if moved and not d.third_derivatives_are_zero:
                raise _beyond(d, "third derivatives")
            wanted = [t is not None for t in ctx.targets]
            grad_tangents, direction_tangents = tangents[: d.n_grads], tangents[d.n_grads : leading]
            total = [None] * d.n_tensors
            if any(t is not None for t in grad_tangents):
                moved = _filled(grad_tangents, ctx.leading_meta[: d.n_grads])
                total = _curvature(d, moved, directions, state, wanted, "third derivatives")
            if any(t is not None for t in direction_tangents):
                total = _sum(total, _curvature(d, grads, direction_tangents, state, wanted, "third derivatives"))
            return _present(total, ctx.targets)

    class_name = "".join(word.capitalize() for word in declared.name.split("_"))
    _name(Direct, class_name + "Function")
    declared.direct = _applier_in_c(Direct)
    functions = {"forward": Op, "backward": Backward, "jvp": Jvp, "curvature": Curvature}
    suffixes = {"forward": "Function", "backward": "Backward", "jvp": "Jvp", "curvature": "Curvature"}
    for role, function in functions.items():
        _name(function, class_name + suffixes[role])
        if role in declared.kernel_ops:
            # torch.compile reads forward's signature to tell its arguments from a ctx.
            names = declared.input_names[role]
            parameters = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
            function.forward.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
            declared.appliers[role] = function_applier(function)
            declared.kernel_ops[role].differentiate = declared.appliers[role]
    return Op


def _name(function: type[torch.autograd.Function], name: str) -> None:
    """Names a Function, and its grad_fn's class `<name>Backward`, which torch named when the class was made."""
    function.__name__ = function.__qualname__ = name
    backward_class = getattr(function, "_backward_cls", None)
    if backward_class is not None:
        backward_class.__name__ = backward_class.__qualname__ = name + "Backward"


# The transforms around a call, innermost last: where the first is missing or changed, the second.
_INTERPRETER_STACKS = (
    _private("torch._functorch.pyfunctorch", "retrieve_all_functorch_interpreters"),
    _private("torch._C._functorch", "get_interpreter_stack"),
)


def _forward_levels() -> int | None:
    """How many forward-mode (jvp) transforms of torch.func are active; None where this torch cannot tell."""
    return next((n for n in map(_jvp_count, _INTERPRETER_STACKS) if n is not None), None)


def _jvp_count(stack) -> int | None:
    try:
        return [interpreter.key().name for interpreter in stack() or ()].count("Jvp")
    except Exception:  # missing (None) or changed
        return None


def _refuse_forward_over_forward_over_reverse(declared: DeclaredOp) -> None:
    """torch.func gives zeros, with no error, where two forward-mode transforms wrap a reverse-mode one
    around any autograd.Function whose derivatives apply Functions (jacfwd(jacfwd(grad(f))); torch 2.9 to
    2.15). A reverse pass under two jvp levels is that case: refuse it, and refuse any reverse pass under
    torch.func where this torch cannot tell. (torch.compile cannot trace the interpreter stack; compiled
    forward mode is refused where it starts, see `kernel_op`.)"""
    if torch.compiler.is_compiling() or _outside_torch_func():
        return
    levels = _forward_levels()
    if levels is None:
        raise torch_func_unknown(
            f"{declared.name}: a reverse-mode derivative under torch.func (which gives wrong values inside two "
            "forward-mode ones)",
            "the transforms around it",
            "torch._functorch.pyfunctorch.retrieve_all_functorch_interpreters, "
            "torch._C._functorch.get_interpreter_stack",
        )
    if levels >= 2:
        raise RuntimeError(
            f"{declared.name}: torch.func gives wrong values for a reverse-mode derivative inside two "
            "forward-mode ones (such as jacfwd(jacfwd(grad(f))) or jacfwd(hessian(f))); take one of the "
            "outer derivatives in reverse mode (jacrev)"
        )


def refusing_forward_over_forward(declared: DeclaredOp, apply: Any) -> Any:
    """`apply`, the op's Function as its callers apply it, but that torch's own error under jacfwd(jacfwd(f)) for
    an op that saves values becomes the op's refusal: torch refuses a saved value's zero tangent at the inner
    level (an output it marked non-differentiable there), before the outer one reaches `_second_forward`."""

    def applied(*args):
        try:
            return apply(*args)
        except RuntimeError as error:
            if "jvp returned a gradient at position" not in str(error):
                raise
            raise _beyond(declared, "forward-over-forward derivatives (jacfwd of jacfwd)") from error

    return applied


def _missing(declared: DeclaredOp, kernel: str, needed_for: str) -> RuntimeError:
    return RuntimeError(
        f"{declared.name}: {needed_for} needs a {kernel} kernel, which the op does not declare; "
        f"a {kernel} kernel gives {_GIVES[kernel]}"
    )


def _beyond(declared: DeclaredOp, what: str) -> RuntimeError:
    hint = ""
    if not declared.third_derivatives_are_zero:
        hint = " An op that is linear or quadratic (bilinear) in its inputs declares third_derivatives_are_zero=True."
    return RuntimeError(f"{declared.name}: {what} are not supported; first and second derivatives are.{hint}")
