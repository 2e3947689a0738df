"""The boundary between torch tensors and the array libraries that do the math.

An op's array kernel takes an `ArrayBackend`, plain arrays and plain values: NumPy
and SciPy for CPU tensors, CuPy and cupyx.scipy for CUDA tensors when CuPy is
installed. `run_kernel` lets kernels read tensors without copies, leaving their
storages resizable, computes float16 and bfloat16 in float32, and hands back new
tensors (one per array the kernel returns) in torch's own memory. `kernel_op`
makes a kernel an operator with its check, fake, vmap rule and autocast;
`function_applier` applies an op's autograd.Function at the least cost each caller
allows, `register_public_op` puts it behind torch.ops, and `public_op` makes the
public function one that torch.fx, TorchScript and tensor-likes see as torch's own.
`check_tensor`, `check_float`, `check_image` and `float_argument` give bad input a
clear error.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import scipy
import scipy.fft  # imported now: every FFT op needs it, and the first call should not pay
import torch
from torch.autograd import forward_ad
from torch.overrides import handle_torch_function, has_torch_function

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
    exactly their shapes (0-d included), on the tensors' device. float16 and bfloat16
    tensors are computed in float32; when the first tensor is one, float results are
    cast back to its dtype.

    Storages stay as native ops leave them. The kernel sees each input's memory without a
    copy, and the input stays resizable (FSDP frees parameters with resize_(0)). Each
    output is a new tensor in torch's own memory, resizable, never aliasing an input,
    whatever the array's strides or flags. NumPy's floating-point warnings are off, as
    native torch gives Inf and NaN silently; a kernel's other warnings reach the caller.
    """
    first = next(a for a in args if isinstance(a, torch.Tensor))
    if first.dtype in _COMPUTED_IN_FLOAT32:
        results = run_kernel(kernel, *(_in_float32(a) for a in args))
        return _map(lambda r: r.to(first.dtype) if r.is_floating_point() else r, results)
    if first.is_cuda and CUPY is not None and _use_cupy.get():
        return _run_on_cupy(kernel, first.device, args)
    if first.is_cpu:
        arrays = [_host_array(a) if isinstance(a, torch.Tensor) else a for a in args]
    else:
        _warn_round_trip(kernel, first.device)
        arrays = [_host_array(a.detach().cpu()) if isinstance(a, torch.Tensor) else a for a in args]
    with np.errstate(all="ignore"):
        result = kernel(NUMPY, *arrays)
    tensors = _map(lambda r: _new_tensor(np, kernel, r), _arrays(np, kernel, result))
    return tensors if first.is_cpu else _map(lambda t: t.to(first.device), tensors)


def _in_float32(a: Any) -> Any:
    return a.float() if isinstance(a, torch.Tensor) and a.dtype in _COMPUTED_IN_FLOAT32 else a


def _run_on_cupy(kernel: Kernel, device: torch.device, args: tuple[Any, ...]) -> Any:
    # CuPy works on PyTorch's current stream, so no synchronisation is needed either way.
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), _cupy_stream(stream.cuda_stream, stream.device_index):
        # DLPack, unlike Tensor.numpy(), leaves the input's storage resizable.
        arrays = [cupy.from_dlpack(a.detach()) if isinstance(a, torch.Tensor) else a for a in args]
        return _map(lambda r: _new_tensor(cupy, kernel, r, device), _arrays(cupy, kernel, kernel(CUPY, *arrays)))


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


def _arrays(xp: ModuleType, kernel: Kernel, result: Any) -> Any:
    """The kernel's result as an array or a tuple of arrays; NumPy's scalars (from reductions) become 0-d arrays."""
    if isinstance(result, (tuple, list)):
        return tuple([_array(xp, kernel, r) for r in result])
    return _array(xp, kernel, result)


def _array(xp: ModuleType, kernel: Kernel, result: Any) -> Any:
    if isinstance(result, xp.ndarray):
        return result
    if xp is np and isinstance(result, np.generic):
        return np.asarray(result)
    raise TypeError(
        f"{_name(kernel)} must return a {xp.__name__} array or a tuple of them, got {type(result).__name__}"
    )


class _HostView:
    """A CPU tensor's memory in NumPy's array interface, keeping the tensor alive.

    Tensor.numpy() would share the memory too, but it marks the storage non-resizable for
    good, and FSDP, which frees parameters with resize_(0), then fails.
    """

    __slots__ = ("__array_interface__", "_tensor")


def _host_array(t: torch.Tensor) -> np.ndarray:
    """A dense CPU tensor as a NumPy array that shares its memory, or a copy for a conjugate or negated view."""
    if t.layout != torch.strided:
        raise TypeError(f"tensors must be dense (strided) to reach an array kernel, got {t.layout}")
    typestr = _NUMPY_TYPESTR.get(t.dtype)
    if typestr is None:
        raise TypeError(f"NumPy has no dtype for {t.dtype}")
    if not t.data_ptr():  # no memory to share: an empty tensor, or a zero tensor (NumPy 1 refuses a null pointer)
        return np.zeros(t.shape, dtype=typestr)
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    view = _HostView()
    view._tensor = t
    view.__array_interface__ = {
        "data": (t.data_ptr(), False),
        "shape": t.shape,
        "strides": None if t.is_contiguous() else tuple([stride * t.element_size() for stride in t.stride()]),
        "typestr": typestr,
        "version": 3,
    }
    return np.asarray(view)


def _new_tensor(xp: ModuleType, kernel: Kernel, array: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """A new tensor in torch's memory with `array`'s values, whatever its strides and flags.

    A tensor that shares the array's memory (torch.from_numpy, torch.from_dlpack) could not be
    resized. from_numpy also refuses negative strides, and warns on a read-only array: those
    are copied by NumPy, the others (most arrays) by torch, which is faster.
    """
    dtype = _TORCH_DTYPE.get(array.dtype)
    if dtype is None:
        raise TypeError(f"{_name(kernel)} returned an array of dtype {array.dtype}, which torch has no dtype for")
    if xp is np and array.flags.writeable and min(array.strides, default=0) >= 0:
        return torch.from_numpy(array).clone(memory_format=torch.contiguous_format)
    out = torch.empty(array.shape, dtype=dtype, device=device)
    xp.copyto(_host_array(out) if xp is np else xp.from_dlpack(out), array)
    return out


def _numpy_dtypes() -> tuple[dict[torch.dtype, str], dict[np.dtype, torch.dtype]]:
    """Each torch dtype that NumPy has, as NumPy's type string, and back."""
    typestr, dtype = {}, {}
    for t in (
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.complex128,
    ):
        array_dtype = torch.empty(0, dtype=t).numpy().dtype
        typestr[t], dtype[array_dtype] = array_dtype.str, t
    return typestr, dtype


_NUMPY_TYPESTR, _TORCH_DTYPE = _numpy_dtypes()


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


def public_op(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, an op's public function, as torch's own Python functions are to their callers.

    A tensor-like argument sees the call through `__torch_function__`, as it does for
    torch.nn.functional: torch.fx.symbolic_trace records the op as one node, and a tensor
    subclass can act on it. TorchScript leaves it as a Python call, since it cannot compile
    NumPy: a scripted module that uses the op runs.
    """

    @functools.wraps(function)
    def public(*args, **kwargs):
        arguments = (*args, *kwargs.values())
        if has_torch_function(arguments):
            return handle_torch_function(public, arguments, *args, **kwargs)
        return function(*args, **kwargs)

    # TorchScript reads the signature for its types; under `from __future__ import annotations`
    # they are strings that only `function`'s module can resolve.
    public.__signature__ = inspect.signature(function, eval_str=True)
    return torch.jit.ignore(public)


def check_tensor(op: str, name: str, t: Any) -> None:
    """Raises a clear TypeError unless `t` is a dense tensor (the public functions' first check)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got layout {t.layout}")


# A tuple, not a union: torch.compile before 2.10 cannot trace isinstance with a union.
_REAL_NUMBERS = (int, float, np.integer, np.floating)


def float_argument(op: str, name: str, value: Any) -> float:
    """`value` as a float, taken as torch takes a float argument: any real Python or NumPy number but a bool."""
    if isinstance(value, bool) or not isinstance(value, _REAL_NUMBERS):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{op}: {name} is too large for a float: an int of {int(value).bit_length()} bits") from None


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

        if any(isinstance(a, torch.Tensor) and forward_ad.unpack_dual(a).tangent is not None for a in args):
            raise RuntimeError(
                f"torch.ops.{namespace}.{name} got a forward-mode tangent (torch.func.jvp, jacfwd, hessian or "
                "dual tensors) under torch.compile, which traces the op's autograd.Function without its jvp; "
                "compute forward-mode derivatives outside torch.compile"
            )
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


def _private(module: str, name: str) -> Callable[..., Any] | None:
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
_raw_keys = getattr(_private("torch._C", "DispatchKeySet"), "raw_repr", None)


@functools.cache
def _plain_dispatch_keys(is_cuda: bool) -> frozenset[int]:
    """A dense tensor's dispatch keys on the CPU or CUDA, a normal tensor's and an inference tensor's, as ints."""
    device = "cuda" if is_cuda else "cpu"
    keys = set()
    for inference in (False, True):
        with torch.inference_mode(inference):
            keys.add(_raw_keys(_dispatch_keys(torch.empty(0, device=device))))
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
    try:
        if (
            _functorch_transforms_active()
            or _any_autocast_enabled()
            or _dispatch_mode_depth()
            or _function_mode_enabled()
            or _jit_tracing_state() is not None
            or _profiler_enabled()
            or _compile_frame_hook() is not None
        ):
            return False
        grad = torch.is_grad_enabled()
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
        if _outside_torch_func():
            return Eager.apply(*args)
        return function.apply(*args)

    return apply


def _outside_torch_func() -> bool:
    """Whether no torch.func transform is active; False where torch's private check is missing or raises."""
    try:
        return not _functorch_transforms_active()
    except Exception:
        return False


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
        # The dispatcher leaves out trailing arguments equal to their defaults: put them back.
        return apply(*args, *defaults[len(args) :])

    library = torch.library.Library(namespace, "FRAGMENT")
    library.define(name + schema)
    arguments = getattr(getattr(torch.ops, namespace), name).default._schema.arguments
    defaults = [a.default_value if a.has_default_value() else None for a in arguments]
    library.impl(name, through_the_dispatcher, "CompositeImplicitAutograd")
    _libraries.append(library)
