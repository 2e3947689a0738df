"""Kernel ops: an array kernel as a PyTorch operator, and the cheapest way to call it.

`kernel_op` registers a kernel (see `_boundary.run_kernel`) as torch.ops.<namespace>.<name>
with a fake, a vmap rule and autocast, and returns a function that calls it: past the
dispatcher in plain eager code (`_plain_eager_call`), through it everywhere else.
`function_applier` applies an autograd.Function at the least cost each caller allows, and
`public_op` makes an op's public function one that torch.fx and tensor-likes see as
torch's own. The op factory (`_op_factory`) builds ops from these.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import torch
from torch.autograd import forward_ad
from torch.overrides import handle_torch_function, has_torch_function

from ._boundary import Kernel, run_kernel


def batch_first(args: tuple[Any, ...], in_dims: tuple[int | None, ...]) -> tuple[Any, ...]:
    """Moves each vmapped dim to the front, for an op that broadcasts leading dims.

    Every tensor gets singleton dims so that its logical dims line up with the
    others' and it has a leading batch dim: the vmapped size, or 1 for an unbatched
    tensor, which broadcasts. Plain values (hyperparameters, whose in_dim is None)
    pass through.
    """
    pairs = list(zip(args, in_dims, strict=True))
    ndim = max(t.dim() - (d is not None) for t, d in pairs if isinstance(t, torch.Tensor))
    lined_up = []
    for t, d in pairs:
        if isinstance(t, torch.Tensor):
            t = t.unsqueeze(0) if d is None else t.movedim(d, 0)
            t = t.reshape(t.shape[:1] + (1,) * (ndim + 1 - t.dim()) + t.shape[1:])
        lined_up.append(t)
    return tuple(lined_up)


PublicFunction = TypeVar("PublicFunction", bound=Callable[..., Any])


def public_op(function: PublicFunction) -> PublicFunction:
    """`function`, an op's public function, as torch's own Python functions are to their callers.

    A tensor-like argument sees the call through `__torch_function__`, as it does for
    torch.nn.functional: torch.fx.symbolic_trace records the op as one node, and a tensor
    subclass can act on it.
    """

    @functools.wraps(function)
    def public(*args, **kwargs):
        arguments = (*args, *kwargs.values())
        if has_torch_function(arguments):
            return handle_torch_function(public, arguments, *args, **kwargs)
        return function(*args, **kwargs)

    return cast(PublicFunction, public)  # with `function`'s signature, for type checkers


def run_in_float32_under_autocast(qualname: str, library: torch.library.Library) -> None:
    """Under torch.autocast, the op's float inputs are cast to float32 and so is its output.

    That is autocast's policy for native ops that need the precision, such as the FFTs.
    """
    for device_type in ("cpu", "cuda"):
        torch.library.register_autocast(qualname, device_type, torch.float32, lib=library)


# Each operator's Library, by qualname: a Library undoes its registrations when it is freed, or destroyed.
_libraries: dict[str, torch.library.Library] = {}


def new_library(qualname: str) -> torch.library.Library:
    """A Library to define the operator `qualname` in; the one defined before by that name is undone first,
    so that declaring an op again (a notebook cell run twice, importlib.reload) replaces it."""
    undefine(qualname)
    library = _libraries[qualname] = torch.library.Library(qualname.split("::")[0], "FRAGMENT")
    return library


def undefine(qualname: str) -> None:
    """Undoes every registration of the operator `qualname` made through `new_library`, if any."""
    library = _libraries.pop(qualname, None)
    if library is None:
        return
    destroy = getattr(library, "_destroy", None)  # private: where it is missing, refuse rather than guess
    if destroy is None:
        raise RuntimeError(
            f"torch {torch.__version__} cannot undo the registration of {qualname}; restart Python to declare it again"
        )
    destroy()


class _NoDerivative(torch.autograd.Function):
    """A kernel op's outputs, where it has no Function to differentiate it: backpropagating through them raises."""

    @staticmethod
    def forward(qualname, compute, *args):
        return compute(*args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.qualname = inputs[0]

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"{ctx.qualname} has no derivative of its own; differentiate the public op, "
            "whose autograd.Function calls it"
        )


def broadcast_fake(returns: str) -> Callable[..., Any]:
    """The fake of an op that returns `returns` ("Tensor", "(Tensor, Tensor)"): each output in the broadcast shape
    of the tensor arguments and the first one's dtype, as elementwise ops have."""

    def fake(*args):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        empties = tuple(tensors[0].new_empty(shape) for _ in range(returns.count("Tensor")))
        return empties if "(" in returns else empties[0]

    return fake


def kernel_op(qualname: str, schema: str, kernel: Kernel, *, fake=None, vmap=None, verify=None, eager_only=False):
    """Registers `kernel` as the operator `qualname` ("namespace::name"), and returns a function that calls it.

    `schema` is torch.library's, such as "(Tensor x, Tensor weight, float frequency) -> Tensor";
    plain-value arguments reach the kernel as they are. Besides the implementation
    (`run_kernel`), the op gets:
    - a fake, for torch.compile and export: `fake(*args)`, or by default `broadcast_fake`;
    - a vmap rule, `vmap(op, info, in_dims, *args)`: by default `once_per_sample`, which is
      right for any kernel. `all_at_once` is the rule of a kernel that treats leading dims as
      batch dims and keeps them in every output;
    - float32 under autocast;
    - no derivative of its own, until the op factory sets `differentiate` on the returned
      function: the op's autograd.Function, which exported programs need. Without one the op
      computes, and refuses to backpropagate.

    It is defined through torch.library.Library, not torch.library.custom_op: that passes
    the same checks (opcheck, compile, export, torch.func) with a third of the dispatch cost.
    The returned function (its `op` attribute is the operator, torch.ops.<namespace>.<name>)
    skips the dispatcher where it would only call the implementation: see `_plain_eager_call`.
    `verify(args, results)`, where given, sees every computed result, and raises on a wrong one.
    `eager_only`: every call runs the implementation itself, for arguments that this torch's
    dispatcher cannot carry (an Opaque before torch 2.13); the op's caller refuses the rest.
    Defining `qualname` again replaces the operator (see `new_library`).
    """
    namespace, name = qualname.split("::")
    library = new_library(qualname)
    # cudagraph_unsafe: CuPy allocates from its own pool, and a kernel may synchronise, so
    # torch.compile(mode="reduce-overhead") leaves the op out of its CUDA graphs.
    library.define(name + schema, tags=(torch.Tag.pt2_compliant_tag, torch.Tag.cudagraph_unsafe))
    op = getattr(getattr(torch.ops, namespace), name).default
    returns = schema.split("->")[1].strip()

    def compute(*args, owned=None):
        results = run_kernel(kernel, *args, owned=owned)
        if verify is not None:
            verify(args, results)
        return results

    # What the dispatcher calls: a compiled caller that falls back to eager must not trace into NumPy.
    implementation = torch.compiler.disable(compute)

    def autograd(keyset, *args):
        def below_autograd(*args):
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

        if any(isinstance(a, torch.Tensor) and forward_ad.unpack_dual(a).tangent is not None for a in args):
            raise RuntimeError(
                f"torch.ops.{namespace}.{name} got a forward-mode tangent (torch.func.jvp, jacfwd, hessian or "
                "dual tensors) under torch.compile, which traces the op's autograd.Function without its jvp; "
                "compute forward-mode derivatives outside torch.compile"
            )
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            # Called directly, as an exported program calls it: the op's Function differentiates it.
            active = torch_func_state()
            if active is None:
                raise torch_func_unknown(f"torch.ops.{namespace}.{name}, differentiated,")
            if active:
                raise RuntimeError(
                    f"torch.ops.{namespace}.{name} got tensors that a torch.func transform differentiates (grad, "
                    "jacrev, vjp, hessian) under torch.compile, which traces the op's autograd.Function without its "
                    "derivatives; apply the transform outside torch.compile"
                )
            if call.differentiate is not None:
                return call.differentiate(*args)
            return _NoDerivative.apply(f"torch.ops.{namespace}.{name}", below_autograd, *args)
        return below_autograd(*args)

    def vmap_rule(info, in_dims, *args):
        return (vmap or once_per_sample)(op, info, in_dims, *args)

    def call(*args):
        # Compiled code must see the op; is_compiling() is first, so Dynamo reads no further.
        if eager_only or (not torch.compiler.is_compiling() and _plain_eager_call(args)):
            return compute(*args)
        if _libraries.get(qualname) is not library:  # a graph from before: the operator would run the new kernel
            raise RuntimeError(
                f"torch.ops.{namespace}.{name} was declared again since this graph was recorded, and the operator "
                "now runs the new declaration's kernel: record the graph again (call the new op)"
            )
        return op(*args)

    library.impl(name, implementation, "CompositeExplicitAutograd")
    library.impl(name, autograd, "Autograd", with_keyset=True)
    torch.library.register_fake(qualname, fake or broadcast_fake(returns), lib=library)
    torch.library.register_vmap(qualname, vmap_rule, lib=library)
    run_in_float32_under_autocast(qualname, library)
    call.op = op  # type: ignore[attr-defined]
    # For a caller that has seen `_plain_eager_call` hold; `owned` as run_kernel takes it.
    call.compute = compute  # type: ignore[attr-defined]
    call.differentiate = None  # type: ignore[attr-defined]
    return call


def once_per_sample(op, info, in_dims, *args):
    """The op on each sample in turn, its outputs stacked: right for any kernel. A batch of 0 gets outputs of
    one sample's shapes, which the op's fake gives, with a batch of 0."""
    pairs = list(zip(args, in_dims, strict=True))
    if info.batch_size == 0:
        return _no_samples(op, pairs)
    samples = [
        op(*[a.select(d, i) if isinstance(a, torch.Tensor) and d is not None else a for a, d in pairs])
        for i in range(info.batch_size)
    ]
    if isinstance(samples[0], torch.Tensor):
        return torch.stack(samples), 0
    stacked = [torch.stack(outputs) for outputs in zip(*samples, strict=True)]
    stacked = type(samples[0])(stacked)
    return stacked, type(samples[0])([0] * len(stacked))


def on_meta(a: Any, without_dim: int | None = None) -> Any:
    """A tensor argument's shape and dtype, without its values, on the meta device (as a fake reads them); with
    `without_dim`, a vmapped dim, one sample's (a batch of 0 has none to select). Other arguments as they are."""
    if not isinstance(a, torch.Tensor):
        return a
    shape = list(a.shape)
    if without_dim is not None:
        del shape[without_dim]
    return torch.empty(shape, dtype=a.dtype, device="meta")


def _no_samples(op, pairs):
    """once_per_sample's outputs for a batch of 0: one sample's shapes, from the op's fake, with a batch of 0."""
    device = next(a.device for a, _ in pairs if isinstance(a, torch.Tensor))
    outputs = op(*[on_meta(a, d) for a, d in pairs])
    if isinstance(outputs, torch.Tensor):
        return outputs.new_empty((0, *outputs.shape), device=device), 0
    empty = type(outputs)([r.new_empty((0, *r.shape), device=device) for r in outputs])
    return empty, type(outputs)([0] * len(empty))


def all_at_once(op, info, in_dims, *args):
    """One call with the vmapped dims in front, for a kernel that broadcasts over leading dims."""
    return batch_expanded(info, op(*batch_first(args, in_dims)))


def batch_expanded(info, results):
    """The results of a call with the batch in front, each expanded to the batch: (results, out_dims)."""
    # An output that no vmapped argument reaches has a batch dim of 1.
    if isinstance(results, torch.Tensor):
        return results.expand(info.batch_size, *results.shape[1:]), 0
    expanded = type(results)(r.expand(info.batch_size, *r.shape[1:]) for r in results)
    return expanded, type(results)([0] * len(expanded))


_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _private(module: str, name: str) -> Any:
    """A private torch name (a function or class), or None where this torch has none by that name."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


# The shortcut's view of torch's state: private names, which a torch release may rename or
# change. Where one is missing or raises, every call takes the dispatcher: slower, as correct.
_functorch_transforms_active = _private("torch._C", "_are_functorch_transforms_active")
_any_autocast_enabled = _private("torch._C", "_is_any_autocast_enabled")
_dispatch_mode_depth = _private("torch._C", "_len_torch_dispatch_stack")
_function_mode_enabled = _private("torch._C", "_is_torch_function_mode_enabled")
_jit_tracing_state = _private("torch._C", "_get_tracing_state")
_profiler_enabled = _private("torch._C._autograd", "_profiler_enabled")
_compile_frame_hook = _private("torch._C._dynamo.eval_frame", "get_eval_frame_callback")
_dispatch_keys = _private("torch._C", "_dispatch_keys")
_raw_keys: Any = getattr(_private("torch._C", "DispatchKeySet"), "raw_repr", None)


@functools.cache
def _plain_dispatch_keys(is_cuda: bool) -> frozenset[int]:
    """A dense tensor's dispatch keys on the CPU or CUDA, a normal tensor's and an inference tensor's, as ints."""
    device = "cuda" if is_cuda else "cpu"
    keys = set()
    for inference in (False, True):
        with torch.inference_mode(inference):
            keys.add(_raw_keys(_dispatch_keys(torch.empty(0, device=device))))
    return frozenset(keys)


def _plain_eager_call(args: Sequence[Any], recorded: bool = False) -> bool:
    """Whether a kernel op's call on `args` can run its implementation itself.

    That is plain eager code, where dispatching would do nothing but call the implementation:
    no autograd to record (unless `recorded`: the caller's autograd.Function records the call),
    no torch.func transform, autocast, dispatch or function mode, JIT trace or profiler, and every
    tensor a dense CPU or CUDA tensor (inference tensors included) with no extra dispatch key
    (no fake, meta, zero, negated or wrapped tensor). Nor may a torch.compile frame hook be
    active, as it is in code that a compiled function runs without tracing: it would trace the
    kernel's NumPy calls, which the implementation the dispatcher calls is guarded against. On a
    small CPU machine, amid a step's other work, these checks cost ~5 µs a call (most of it reading
    each tensor's dispatch keys), and dispatching ~40 µs.
    """
    try:
        if (
            forward_ad._current_level >= 0  # a dual level is open: tensors may carry tangents
            or _functorch_transforms_active()
            or _any_autocast_enabled()
            or _dispatch_mode_depth()
            or _function_mode_enabled()
            or _jit_tracing_state() is not None
            or _profiler_enabled()
            or _compile_frame_hook() is not None
        ):
            return False
        grad = not recorded and torch.is_grad_enabled()
        for a in args:
            if isinstance(a, torch.Tensor) and not (
                type(a) in _PLAIN_TENSOR_TYPES
                and not (grad and a.requires_grad)
                and _raw_keys(_dispatch_keys(a)) in _plain_dispatch_keys(a.is_cuda)
            ):
                return False
        return True
    except Exception:  # a private name missing (None) or changed: see above
        return False


def function_applier(function: type[torch.autograd.Function]) -> Callable[..., Any]:
    """`function.apply`, in the form each caller needs, with the same values and derivatives.

    - Eager, outside torch.func: the same Function with ctx as forward's first argument.
      Torch applies that form about 30 µs faster a call: it does not bind the arguments
      to forward's signature.
    - Under torch.func transforms: `function` itself, whose setup_context they need.
    - Under torch.compile: `function` without its jvp, which Dynamo refuses under fullgraph
      (torch 2.13, 2.14); compiled code runs no forward-mode AD.
    """

    # Named as `function`: torch names each output's grad_fn after the class (<Name>Backward).
    def forward(ctx, *args):
        output = function.forward(*args)
        function.setup_context(ctx, args, output)
        return output

    eager = type(function.__name__, (function,), {
        "forward": staticmethod(forward),
        "setup_context": torch.autograd.Function.setup_context,  # the base one: forward takes ctx
    })  # fmt: skip
    for_compile = type(function.__name__, (function,), {"jvp": torch.autograd.Function.jvp})

    def apply(*args):
        if torch.compiler.is_compiling():
            return for_compile.apply(*args)
        if _outside_torch_func():
            return eager.apply(*args)
        return function.apply(*args)

    return apply


_functorch_level = _private("torch._C._functorch", "maybe_current_level")


def torch_func_state() -> bool | None:
    """Whether a torch.func transform is active: from torch's private check, or another where that one is
    missing or raises; None where neither tells."""
    # Each check's absence is tested before calling it: torch.compile traces a call that raises, not one of None.
    if _functorch_transforms_active is not None:
        try:
            return bool(_functorch_transforms_active())
        except Exception:
            pass
    if _functorch_level is not None:
        try:
            return _functorch_level() is not None
        except Exception:
            pass
    return None


def _outside_torch_func() -> bool:
    """Whether no torch.func transform is active; False where torch's private checks cannot tell."""
    return torch_func_state() is False


def torch_func_unknown(what: str, need: str = "whether torch.func transforms are active",
                       names: str = "torch._C._are_functorch_transforms_active, "
                       "torch._C._functorch.maybe_current_level") -> RuntimeError:  # fmt: skip
    """The error where an op must know something of torch.func's state, and this torch's private functions that
    tell are missing or changed: a refusal, never a guess."""
    return RuntimeError(
        f"{what} must know {need}, and torch {torch.__version__} has none of the private functions that tell "
        f"({names}), or they changed: it refuses rather than guess; use a torch release that the op's package supports"
    )
