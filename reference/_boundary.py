"""The boundary between torch tensors and the array libraries that do the math.

An op's array kernel takes an `ArrayBackend`, plain arrays and plain values: NumPy
and SciPy for CPU tensors, CuPy and cupyx.scipy for CUDA tensors when CuPy is
installed. `run_kernel` moves tensors across without copies where it can,
computes float16 and bfloat16 in float32, and hands back tensors (one per array
the kernel returns) that own their memory. `kernel_op` makes a kernel an operator
with its check, fake, vmap rule and autocast; `function_applier` applies an op's
autograd.Function at the least cost each caller allows, and `register_public_op`
puts it behind torch.ops. `check_tensor`, `check_float` and
`check_image` give bad input a clear error.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import scipy
import scipy.fft  # imported now: every FFT op needs it, and the first call should not pay
import torch
from torch._C._dynamo.eval_frame import get_eval_frame_callback as _compile_frame_hook

# Below this many elements, a second FFT thread costs more than it saves.
_MIN_ELEMENTS_PER_FFT_THREAD = 1 << 17

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# NumPy has no bfloat16, and SciPy computes float16 in float32 anyway; so does native torch on the CPU.
_COMPUTED_IN_FLOAT32 = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class ArrayBackend:
    """The array module (`xp`) and the SciPy package (`scipy`, or CuPy's `cupyx.scipy`) of one device.

    Any SciPy subpackage is an attribute, imported on first use, so one kernel body
    runs on both devices: `backend.ndimage`, `backend.signal`, `backend.special`,
    `backend.fft`, ... `rfft2` and `irfft2` add SciPy's FFT threads where they pay.
    """

    xp: ModuleType
    scipy: ModuleType

    def __getattr__(self, name: str) -> ModuleType:  # called only for names the instance does not have yet
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            subpackage = importlib.import_module(f"{self.scipy.__name__}.{name}")
        except ImportError as error:
            raise AttributeError(f"{self.scipy.__name__} has no subpackage {name!r}") from error
        # Kept on the instance, so later lookups are plain attributes: kernels look up
        # `backend.fft` on every call, and an import, even of a loaded module, costs µs.
        object.__setattr__(self, name, subpackage)
        return subpackage

    def _workers(self, a: Any) -> dict[str, int]:
        if self.xp is not np:  # only SciPy takes `workers`
            return {}
        threads = torch.get_num_threads() if a.size >= _MIN_ELEMENTS_PER_FFT_THREAD else 1
        return {"workers": threads}

    def rfft2(self, a: Any, s: tuple[int, int] | None = None) -> Any:
        return self.fft.rfft2(a, s=s, **self._workers(a))

    def irfft2(self, a: Any, s: tuple[int, int], norm: str = "backward") -> Any:
        return self.fft.irfft2(a, s=s, norm=norm, **self._workers(a))

    def next_fast_len(self, n: int) -> int:
        return self.fft.next_fast_len(n, real=True)

    def fuse(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """`body(xp, *args)` as a function of `args`: one fused kernel on CuPy, the body itself on NumPy.

        `body` is elementwise NumPy code written against `xp` (ufuncs, arithmetic,
        comparisons; arrays and plain numbers in, one array out). On the GPU each
        operation would be a kernel launch of its own, tens of µs from Python; fused,
        the body is one launch. On NumPy it runs as written, so it stays the reference.
        """
        return functools.partial(body, np) if self.xp is np else _fused_on_cupy(body)


NUMPY = ArrayBackend(np, scipy)

try:
    import cupy
    import cupyx.scipy
except ImportError:
    cupy = None
    CUPY = None
else:
    CUPY = ArrayBackend(cupy, cupyx.scipy)


@functools.cache
def _fused_on_cupy(body: Callable[..., Any]) -> Callable[..., Any]:
    """`body` compiled by cupy.fuse, once per body; CuPy compiles once per argument dtypes."""

    def on_cupy(*args):
        return body(cupy, *args)

    return cupy.fuse(kernel_name=body.__name__.lstrip("_"))(on_cupy)


# A context variable, so that each thread (and each asyncio task) has its own setting.
_use_cupy = contextvars.ContextVar("use_cupy", default=True)
_warned_round_trip: set[str] = set()


@contextlib.contextmanager
def host_round_trip():
    """Within this block, CUDA tensors go through NumPy/SciPy even where CuPy is installed."""
    token = _use_cupy.set(False)
    try:
        yield
    finally:
        _use_cupy.reset(token)


Kernel = Callable[..., Any]


def run_kernel(kernel: Kernel, *args: Any) -> Any:
    """Calls `kernel(backend, *args)` with each tensor in `args` as an array, and returns its result as tensors.

    `args` are tensors, which share one device, and plain values (a float, int, bool or
    str hyperparameter), which reach the kernel as they are. The kernel returns an
    array, or a tuple of arrays; run_kernel returns a tensor, or a tuple of tensors, of
    exactly their shapes (0-d included), on the tensors' device. Each owns its memory:
    it never aliases an input. float16 and bfloat16 tensors are computed in float32;
    when the first tensor is one, float results are cast back to its dtype.
    """
    first = next(a for a in args if isinstance(a, torch.Tensor))
    if first.dtype in _COMPUTED_IN_FLOAT32:
        results = run_kernel(kernel, *(_in_float32(a) for a in args))
        return _map(lambda r: r.to(first.dtype) if r.is_floating_point() else r, results)
    if first.is_cuda and CUPY is not None and _use_cupy.get():
        return _run_on_cupy(kernel, first.device, args)
    if first.is_cpu:
        to_tensor = torch.from_numpy
    else:
        _warn_round_trip(kernel, first.device)

        def to_tensor(r):
            return torch.from_numpy(r).to(first.device)

    # numpy(force=True) detaches in one call; it shares a CPU tensor's memory, and copies others to the host.
    arrays = [a.numpy(force=True) if isinstance(a, torch.Tensor) else a for a in args]
    return _tensors(to_tensor, np, kernel(NUMPY, *arrays), arrays, kernel)


def _in_float32(a: Any) -> Any:
    return a.float() if isinstance(a, torch.Tensor) and a.dtype in _COMPUTED_IN_FLOAT32 else a


def _run_on_cupy(kernel: Kernel, device: torch.device, args: tuple[Any, ...]) -> Any:
    # CuPy works on PyTorch's current stream, so no synchronisation is needed either way.
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), _cupy_stream(stream.cuda_stream, stream.device_index):
        arrays = [cupy.from_dlpack(a.detach()) if isinstance(a, torch.Tensor) else a for a in args]
        return _tensors(torch.from_dlpack, cupy, kernel(CUPY, *arrays), arrays, kernel)


def _map(function: Callable[[Any], Any], results: Any) -> Any:
    return tuple(map(function, results)) if isinstance(results, tuple) else function(results)


class _StreamHandle:
    """A raw CUDA stream in the CUDA stream protocol, which CuPy's Stream.from_external takes."""

    def __init__(self, pointer: int):
        self.pointer = pointer

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.pointer)


@functools.cache
def _cupy_stream(pointer: int, device_index: int):
    """CuPy's handle on a torch stream, made once per stream: making one costs a launch's worth of time."""
    if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy 14 and later
        return cupy.cuda.Stream.from_external(_StreamHandle(pointer))
    return cupy.cuda.ExternalStream(pointer, device_index)


def _tensors(to_tensor: Callable[[Any], torch.Tensor], xp: ModuleType, result: Any, arrays: list, kernel: Kernel):
    """The kernel's array, or tuple of arrays, as tensors that own their memory: see `_owned`."""
    if isinstance(result, (tuple, list)):
        return tuple([to_tensor(_owned(xp, r, arrays, kernel)) for r in result])
    return to_tensor(_owned(xp, result, arrays, kernel))


def _owned(xp: ModuleType, result: Any, arrays: list, kernel: Kernel) -> Any:
    """`result`, C-contiguous and sharing no memory with the kernel's input `arrays`.

    Torch rejects negative strides, and an output that aliases an input breaks autograd.
    """
    if not isinstance(result, xp.ndarray):
        if xp is np and isinstance(result, np.generic):  # a NumPy scalar, as reductions return
            return np.asarray(result)
        raise TypeError(
            f"{_name(kernel)} must return a {xp.__name__} array or a tuple of them, got {type(result).__name__}"
        )
    flags = result.flags
    if not flags.c_contiguous:
        return result.copy()
    # A NumPy array that owns its memory shares it with no input, whose memory is its tensor's.
    # That is the common case, and the check below costs µs. On CuPy every input is checked.
    if xp is np and flags.owndata:
        return result
    if any(isinstance(a, xp.ndarray) and xp.may_share_memory(result, a) for a in arrays):
        return result.copy()
    return result


def _name(kernel: Kernel) -> str:
    """A kernel's name for messages; functools.partial and other callables have none of their own."""
    return getattr(kernel, "__name__", None) or getattr(getattr(kernel, "func", None), "__name__", repr(kernel))


def _warn_round_trip(kernel: Kernel, device: torch.device) -> None:
    name = _name(kernel)
    if name in _warned_round_trip:
        return
    _warned_round_trip.add(name)
    hint = ""
    if device.type == "cuda":
        distribution = importlib.metadata.packages_distributions().get(__package__, [__package__])[0]
        extra = f"cuda{(torch.version.cuda or '12').split('.')[0]}"
        hint = f" Install CuPy to keep them on the GPU: pip install '{distribution}[{extra}]'."
    warnings.warn(
        f"{name}: {device.type} tensors are copied to the host and back for NumPy/SciPy.{hint}",
        RuntimeWarning,
        stacklevel=3,
    )


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


def check_tensor(op: str, name: str, t: Any) -> None:
    """Raises a clear TypeError unless `t` is a tensor (the public functions' first check)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def check_float(op: str, name: str, t: torch.Tensor) -> None:
    """Raises a clear error unless `t` is a float16, bfloat16, float32 or float64 tensor.

    Ops call their checks from their implementation and from their fake, so that every
    path (the public function, torch.ops, torch.compile, export) refuses the same input
    with the same message.
    """
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


def run_in_float32_under_autocast(qualname: str, library: torch.library.Library) -> None:
    """Under torch.autocast, the op's float inputs are cast to float32 and so is its output.

    That is autocast's policy for native ops that need the precision, such as the FFTs.
    """
    for device_type in ("cpu", "cuda"):
        torch.library.register_autocast(qualname, device_type, torch.float32, lib=library)


_libraries: list[torch.library.Library] = []  # a Library undoes its registrations when it is freed


class _NoDerivative(torch.autograd.Function):
    """A kernel op's outputs, when its inputs require grad: backpropagating through them raises."""

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


def kernel_op(qualname: str, schema: str, kernel: Kernel, *, check=None, fake=None):
    """Registers `kernel` as the operator `qualname` ("namespace::name"), and returns a function that calls it.

    `schema` is torch.library's, such as "(Tensor x, Tensor weight, float frequency) -> Tensor";
    plain-value arguments reach the kernel as they are. Besides the implementation
    (`run_kernel`), the op gets:
    - `check(*args)`, called by the implementation and by the fake, so every path refuses alike;
    - a fake, for torch.compile and export: `fake(*args)`, or by default one output (or one
      per returned Tensor) in the broadcast shape of the tensor arguments, as elementwise ops have;
    - a vmap rule: vmapped dims move to the front (`batch_first`) and the kernel broadcasts
      over them, so the kernel must treat leading dims as batch dims, and keep them in
      every output;
    - float32 under autocast;
    - no derivative of its own: the op's autograd.Functions differentiate it. Called
      directly (an exported program does), it computes, and refuses to backpropagate.

    It is defined through torch.library.Library, not torch.library.custom_op: that passes
    the same checks (opcheck, compile, export, torch.func) with a third of the dispatch cost.
    The returned function (its `op` attribute is the operator, torch.ops.<namespace>.<name>)
    skips the dispatcher where it would only call the implementation: see `_plain_eager_call`.
    """
    namespace, name = qualname.split("::")
    library = torch.library.Library(namespace, "FRAGMENT")
    # cudagraph_unsafe: CuPy allocates from its own pool, and a kernel may synchronise, so
    # torch.compile(mode="reduce-overhead") leaves the op out of its CUDA graphs.
    library.define(name + schema, tags=(torch.Tag.pt2_compliant_tag, torch.Tag.cudagraph_unsafe))
    op = getattr(getattr(torch.ops, namespace), name).default
    returns = schema.split("->")[1]

    def compute(*args):
        if check is not None:
            check(*args)
        return run_kernel(kernel, *args)

    # What the dispatcher calls: a compiled caller that falls back to eager must not trace into NumPy.
    implementation = torch.compiler.disable(compute)

    def autograd(keyset, *args):
        def below_autograd(*args):
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            return _NoDerivative.apply(f"torch.ops.{namespace}.{name}", below_autograd, *args)
        return below_autograd(*args)

    def fake_with_check(*args):
        if check is not None:
            check(*args)
        if fake is not None:
            return fake(*args)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        empties = tuple(tensors[0].new_empty(shape) for _ in range(returns.count("Tensor")))
        return empties if "(" in returns else empties[0]

    def vmap_rule(info, in_dims, *args):
        # An output that no vmapped argument reaches has a batch dim of 1: expand it to the batch.
        results = op(*batch_first(args, in_dims))
        if isinstance(results, tuple):
            return tuple(r.expand(info.batch_size, *r.shape[1:]) for r in results), (0,) * len(results)
        return results.expand(info.batch_size, *results.shape[1:]), 0

    def call(*args):
        # Compiled code must see the op; is_compiling() is first, so Dynamo reads no further.
        if not torch.compiler.is_compiling() and _plain_eager_call(args):
            return compute(*args)
        return op(*args)

    library.impl(name, implementation, "CompositeExplicitAutograd")
    library.impl(name, autograd, "Autograd", with_keyset=True)
    torch.library.register_fake(qualname, fake_with_check, lib=library)
    torch.library.register_vmap(qualname, vmap_rule, lib=library)
    run_in_float32_under_autocast(qualname, library)
    _libraries.append(library)
    call.op = op
    return call


_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


@functools.cache
def _plain_dispatch_keys(is_cuda: bool) -> frozenset[int]:
    """A dense tensor's dispatch keys on the CPU or CUDA, a normal tensor's and an inference tensor's, as ints."""
    device = "cuda" if is_cuda else "cpu"
    keys = set()
    for inference in (False, True):
        with torch.inference_mode(inference):
            keys.add(torch._C._dispatch_keys(torch.empty(0, device=device)).raw_repr())
    return frozenset(keys)


def _plain_eager_call(args: tuple[Any, ...]) -> bool:
    """Whether a kernel op's call on `args` can run its implementation itself.

    That is plain eager code, where dispatching would do nothing but call the implementation:
    no autograd to record, no torch.func transform, autocast, dispatch or function mode, JIT
    trace or profiler, and every tensor a dense CPU or CUDA tensor (inference tensors included)
    with no extra dispatch key (no fake, meta, zero, negated or wrapped tensor). Nor may a
    torch.compile frame hook be active, as it is in code that a compiled function runs
    without tracing: it would trace the kernel's NumPy calls, which the implementation the
    dispatcher calls is guarded against. On a small CPU machine, amid a step's other work,
    these checks cost ~13 µs a call, and dispatching ~40 µs.
    """
    if (
        torch._C._are_functorch_transforms_active()
        or torch._C._is_any_autocast_enabled()
        or torch._C._len_torch_dispatch_stack()
        or torch._C._is_torch_function_mode_enabled()
        or torch._C._get_tracing_state() is not None
        or torch._C._autograd._profiler_enabled()
        or _compile_frame_hook() is not None
    ):
        return False
    grad = torch.is_grad_enabled()
    for a in args:
        if isinstance(a, torch.Tensor) and not (
            type(a) in _PLAIN_TENSOR_TYPES
            and not (grad and a.requires_grad)
            and torch._C._dispatch_keys(a).raw_repr() in _plain_dispatch_keys(a.is_cuda)
        ):
            return False
    return True


def function_applier(function: type[torch.autograd.Function]) -> Callable[..., Any]:
    """`function.apply`, in the form each caller needs, with the same values and derivatives.

    - Eager, outside torch.func: the same Function with ctx as forward's first argument.
      Torch applies that form about 30 µs faster a call: it does not bind the arguments
      to forward's signature.
    - Under torch.func transforms: `function` itself, whose setup_context they need.
    - Under torch.compile: `function` without its jvp, which Dynamo refuses under fullgraph
      (torch 2.13, 2.14); compiled code runs no forward-mode AD.
    """

    class Eager(function):
        setup_context = torch.autograd.Function.setup_context  # the base one: forward takes ctx

        @staticmethod
        def forward(ctx, *args):
            output = function.forward(*args)
            function.setup_context(ctx, args, output)
            return output

    class ForCompile(function):
        jvp = torch.autograd.Function.jvp

    Eager.__name__ = Eager.__qualname__ = function.__name__
    ForCompile.__name__ = ForCompile.__qualname__ = function.__name__

    def apply(*args):
        if torch.compiler.is_compiling():
            return ForCompile.apply(*args)
        if torch._C._are_functorch_transforms_active():
            return function.apply(*args)
        return Eager.apply(*args)

    return apply


def register_public_op(namespace: str, name: str, schema: str, apply: Callable[..., torch.Tensor]) -> None:
    """Registers torch.ops.<namespace>.<name> as `apply`, the op's autograd.Function, for every caller.

    So it gives the public function's values and derivatives, reverse and forward, eager,
    compiled and exported; under vmap, torch runs it once per sample. torch.func's
    derivative transforms cannot reach an autograd.Function inside an operator
    (pytorch/pytorch#168393): there it refuses, rather than return the zero tangents
    that a custom op's own autograd would give.
    """

    def through_the_dispatcher(*args):
        if torch._C._are_functorch_transforms_active():
            raise RuntimeError(
                f"torch.ops.{namespace}.{name} does not run under torch.func transforms (grad, jacrev, jvp, ...); "
                f"call {namespace}.{name}, which supports them all"
            )
        return apply(*args)

    library = torch.library.Library(namespace, "FRAGMENT")
    library.define(name + schema)
    library.impl(name, through_the_dispatcher, "CompositeImplicitAutograd")
    _libraries.append(library)
