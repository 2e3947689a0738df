"""The boundary between torch tensors and the array libraries that do the math.

An op's array kernel takes an `ArrayBackend`, plain arrays and plain values: NumPy
and SciPy for CPU tensors, CuPy and cupyx.scipy for CUDA tensors when CuPy is
installed. `run_kernel` lets kernels read tensors without copies, leaving their
storages resizable and their values unchanged (NumPy sees read-only arrays), computes
float16 and bfloat16 in float32, and hands back new tensors (one per array the kernel
returns) in torch's own memory, but for values only an op's derivatives read. The kernel
ops (`_kernel_ops`) call kernels through it; nothing here knows of autograd.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.metadata
import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import scipy
import scipy.fft  # imported now: every FFT op needs it, and the first call should not pay
import torch

from ._opaque import Opaque

# Below this many elements, a second FFT thread costs more than it saves.
_MIN_ELEMENTS_PER_FFT_THREAD = 1 << 17
# Below this many bytes, copying a result into torch's memory costs less than making the array in it.
_MIN_BYTES_IN_TORCH_MEMORY = 1 << 16

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

    def irfft2(self, a: Any, s: tuple[int, int], norm: str = "backward", as_result: bool = False) -> Any:
        """The inverse of rfft2 over the last two dims, of size `s`.

        `as_result`: the kernel returns the array whole, as an output or a gradient. On NumPy, where `a` is
        s's half spectrum, it is then made in torch's memory (as `empty` makes it, from 64 KiB), by SciPy's
        own pocketfft, whichever scipy.fft backend is set, and becomes the op's tensor without a copy.
        """
        workers = self._workers(a)
        if as_result and self.xp is np and _c2r_applies(a, s, norm):
            out = self.empty((*a.shape[:-2], s[0], s[1]), a.real.dtype)
            return _C2R(a, (a.ndim - 2, a.ndim - 1), s[1], False, _INVERSE_NORMS[norm], out, workers["workers"])
        return self.fft.irfft2(a, s=s, norm=norm, **workers)

    def next_fast_len(self, n: int) -> int:
        return self.fft.next_fast_len(n, real=True)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A new array for a kernel to write a result into (`xp.multiply(a, b, out=backend.empty(...))`) and return.

        On NumPy, from 64 KiB, its memory is torch's: returned whole, as one result, it becomes that
        result's tensor without a copy (a view of it, or a second return, is copied). A smaller one, and
        one on CuPy, is the array module's `empty`. A kernel must not keep it after it returns: the op's
        caller owns it.
        """
        dtype = np.dtype(dtype) if self.xp is np else dtype
        if self.xp is not np or math.prod(shape) * dtype.itemsize < _MIN_BYTES_IN_TORCH_MEMORY:
            return self.xp.empty(shape, dtype)
        torch_dtype = _TORCH_DTYPE.get(dtype)
        if torch_dtype is None:
            raise TypeError(f"backend.empty: torch has no dtype for {dtype}")
        return _host_array(torch.empty(shape, dtype=torch_dtype), writable=True, view=_ResultView())

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


_INVERSE_NORMS = {"backward": 2, "ortho": 1, "forward": 0}  # pocketfft's inorm: divide by N, sqrt(N), 1


def _c2r_applies(a: np.ndarray, s: tuple[int, int], norm: str) -> bool:
    """Whether SciPy's private pocketfft c2r gives irfft2 of `a` at size `s` (scipy.fft.irfft2 has no `out`): `a`
    is s's half spectrum, complex, and c2r has given scipy.fft.irfft2's values in this process (`_c2r_agrees`)."""
    if norm not in _INVERSE_NORMS or a.ndim < 2 or a.shape[-2:] != (s[0], s[1] // 2 + 1):
        return False
    return a.dtype in (np.complex64, np.complex128) and _c2r_agrees()


_C2R: Any = getattr(getattr(getattr(scipy.fft, "_pocketfft", None), "pypocketfft", None), "c2r", None)


@functools.cache
def _c2r_agrees() -> bool:
    """Whether the private c2r gives scipy.fft.irfft2's values, bit for bit, on each norm, odd and even sizes and
    both complex dtypes, once a process."""
    if _C2R is None:
        return False
    irfft2: Any = scipy.fft.irfft2  # its stubs take norm as a Literal
    try:
        spectrum = np.random.default_rng(0).standard_normal((2, 3, 4, 2)).view(np.complex128)[..., 0]  # (2, 3, 4)
        for dtype, norm, size in itertools.product((np.complex64, np.complex128), _INVERSE_NORMS, (6, 7)):
            a: Any = spectrum.astype(dtype)
            out = np.empty((2, 3, size), a.real.dtype)
            result = _C2R(a, (1, 2), size, False, _INVERSE_NORMS[norm], out, 1)
            if result is not out or not np.array_equal(out, irfft2(a, s=(3, size), norm=norm)):
                return False
    except Exception:  # a private signature that changed
        return False
    return True


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


def run_kernel(kernel: Kernel, *args: Any, owned: int | None = None) -> Any:
    """Calls `kernel(backend, *args)` with each tensor in `args` as an array, and returns its result as tensors.

    `args` are tensors, which share one device, and plain values (a float, int, bool or
    str hyperparameter), which reach the kernel as they are, an Opaque as its object. The kernel returns an
    array, or a tuple of arrays; run_kernel returns a tensor, or a tuple of tensors, of
    exactly their shapes (0-d included), on the tensors' device. float16 and bfloat16
    tensors are computed in float32; when the first tensor is one, float results are
    cast back to its dtype.

    Storages stay as native ops leave them. The kernel sees each input's memory without a
    copy, and the input stays resizable (FSDP frees parameters with resize_(0)). Each
    output is a new tensor in torch's own memory, resizable, never aliasing an input,
    whatever the array's strides or flags. NumPy's floating-point warnings are off, as
    native torch gives Inf and NaN silently; a kernel's other warnings reach the caller.

    With `owned`, only the first `owned` results are such tensors; on the CPU the others
    may share the kernel's NumPy memory, without a copy: for values no caller sees or
    resizes (what an op saves for its derivatives).
    """
    for first in args:  # the first tensor: a loop, as a generator costs a frame a call
        if isinstance(first, torch.Tensor):
            break
    else:
        raise TypeError(f"{_name(kernel)} gets no tensor: run_kernel needs one, whose device the kernel runs on")
    if first.dtype in _COMPUTED_IN_FLOAT32:
        results = run_kernel(kernel, *(_in_float32(a) for a in args), owned=owned)
        return _map(lambda r: r.to(first.dtype) if r.is_floating_point() else r, results)
    if first.is_cuda and CUPY is not None and _use_cupy.get():
        return _run_on_cupy(kernel, first.device, args)
    if first.is_cpu:
        arrays = [_host_array(a) if isinstance(a, torch.Tensor) else plain_value(a) for a in args]
    else:
        _warn_round_trip(kernel, first.device)
        arrays = [_host_array(a.detach().cpu()) if isinstance(a, torch.Tensor) else plain_value(a) for a in args]
    if _FP_ERRORS is None:
        with np.errstate(all="ignore"):
            result = kernel(NUMPY, *arrays)
    else:  # np.errstate(all="ignore"), without its three Python calls
        token = _FP_ERRORS.set(_ignoring_fp_errors(all="ignore"))
        try:
            result = kernel(NUMPY, *arrays)
        finally:
            _FP_ERRORS.reset(token)
    result = _arrays(np, kernel, result)
    tensors: Any
    if not isinstance(result, tuple):
        tensors = _new_tensor(np, kernel, result)
    else:
        shared = len(result) if owned is None or not first.is_cpu else owned
        tensors = tuple([_new_tensor(np, kernel, r, shared=i >= shared) for i, r in enumerate(result)])
    return tensors if first.is_cpu else _map(lambda t: t.to(first.device), tensors)


def _fp_error_state() -> tuple[Any, Any]:
    """NumPy's floating-point error state as a context variable, and what makes its values (private names,
    NumPy 2): (None, None) where they are missing or do not act as np.errstate does."""
    try:
        from numpy._core import _ufunc_config

        state, make = _ufunc_config._extobj_contextvar, _ufunc_config._make_extobj  # type: ignore[attr-defined]
        token = state.set(make(all="ignore"))
        try:
            ignoring = np.geterr() == {"divide": "ignore", "over": "ignore", "under": "ignore", "invalid": "ignore"}
        finally:
            state.reset(token)
        return (state, make) if ignoring else (None, None)
    except Exception:  # NumPy 1, or names that changed
        return None, None


_FP_ERRORS, _ignoring_fp_errors = _fp_error_state()


def plain_value(a: Any) -> Any:
    """A plain argument as kernels get it: an Opaque's object, any other value itself."""
    return a.value if isinstance(a, Opaque) else a


def _in_float32(a: Any) -> Any:
    return a.float() if isinstance(a, torch.Tensor) and a.dtype in _COMPUTED_IN_FLOAT32 else a


def _run_on_cupy(kernel: Kernel, device: torch.device, args: tuple[Any, ...]) -> Any:
    # CuPy works on PyTorch's current stream, so no synchronisation is needed either way.
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), _cupy_stream(stream.cuda_stream, stream.device_index):
        # DLPack, unlike Tensor.numpy(), leaves the input's storage resizable.
        arrays = [
            cupy.from_dlpack(_aligned(a.detach())) if isinstance(a, torch.Tensor) else plain_value(a) for a in args
        ]
        return _map(lambda r: _new_tensor(cupy, kernel, r, device), _arrays(cupy, kernel, kernel(CUPY, *arrays)))


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """`t`, or a copy of it where its memory starts off a 16-byte boundary (a view from select or a slice):
    cuFFT refuses such a pointer (CUFFT_INVALID_VALUE), where NumPy takes any."""
    return t if t.data_ptr() % 16 == 0 else t.clone(memory_format=torch.contiguous_format)


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
    __array_interface__: dict[str, Any]
    _tensor: torch.Tensor


class _ResultView(_HostView):
    """The memory of a result tensor that `ArrayBackend.empty` made; `taken` once a result has become it."""

    __slots__ = ("taken",)

    def __init__(self):
        self.taken = False


def _owner(array: np.ndarray) -> Any:
    """What holds `array`'s memory: the view of a tensor that it reaches through its bases, else the last base
    (None for an array of its own). Bases that are not arrays may have bases too (as_strided's)."""
    base: Any = array.base
    while not isinstance(base, _HostView) and getattr(base, "base", None) is not None:
        base = base.base
    return base


def _taken_whole(array: np.ndarray, view: _ResultView, dtype: torch.dtype) -> torch.Tensor | None:
    """The tensor of `backend.empty` that `array` is, whole, if no result has taken it yet; else None."""
    # Only the array that `empty` made has the view itself as its base: NumPy's views of it (a slice, a
    # reshape, a transpose, another dtype) have that array as theirs. Its shape, dtype and strides may still
    # have been set in place; its data pointer cannot.
    base: Any = array.base  # typed as an ndarray; here it may be the view
    t = view._tensor
    if view.taken or base is not view or array.shape != t.shape or dtype != t.dtype:
        return None
    if not array.flags.c_contiguous:
        return None
    view.taken = True
    return t


def _host_array(t: torch.Tensor, writable: bool = False, view: _HostView | None = None) -> np.ndarray:
    """A dense CPU tensor as a NumPy array that shares its memory, or a copy for a conjugate or negated view.

    The array is read-only unless `writable`: kernels read inputs through it, and must not change them.
    """
    if t.layout != torch.strided:
        raise TypeError(f"tensors must be dense (strided) to reach an array kernel, got {t.layout}")
    typestr = _NUMPY_TYPESTR.get(t.dtype)
    if typestr is None:
        raise TypeError(f"NumPy has no dtype for {t.dtype}")
    if not t.data_ptr():  # no memory to share: an empty tensor, or a zero tensor (NumPy 1 refuses a null pointer)
        if t.numel() and not t._is_zerotensor():  # its storage was freed (resize_(0), as FSDP frees parameters)
            raise RuntimeError(
                f"a tensor of shape {tuple(t.shape)} and dtype {t.dtype} has no memory: its storage holds "
                f"{t.untyped_storage().nbytes()} bytes (freed, as FSDP frees a sharded parameter outside its forward)"
            )
        return np.zeros(t.shape, dtype=typestr)
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    view = _HostView() if view is None else view
    view._tensor = t
    view.__array_interface__ = {
        "data": (t.data_ptr(), not writable),
        "shape": t.shape,
        "strides": None if t.is_contiguous() else tuple([stride * t.element_size() for stride in t.stride()]),
        "typestr": typestr,
        "version": 3,
    }
    return np.asarray(view)


def _new_tensor(
    xp: ModuleType, kernel: Kernel, array: Any, device: torch.device | str = "cpu", shared: bool = False
) -> torch.Tensor:
    """A new tensor in torch's memory with `array`'s values, whatever its strides and flags; or, where `shared`,
    a tensor that shares a writable NumPy array's memory.

    A tensor that shares the array's memory (torch.from_numpy, torch.from_dlpack) could not be
    resized. from_numpy also refuses negative strides, and warns on a read-only array (an input's,
    which a result must never share): those are copied by NumPy, the others (most arrays) by torch,
    which is faster.
    """
    dtype = _TORCH_DTYPE.get(array.dtype)
    if dtype is None:
        raise TypeError(f"{_name(kernel)} returned an array of dtype {array.dtype}, which torch has no dtype for")
    if xp is np:
        base = array.base
        if base is not None and type(owner := _owner(array)) is _ResultView:  # torch's memory: never shared
            tensor = _taken_whole(array, owner, dtype)
            if tensor is not None:
                return tensor
            shared = False
        if array.flags.writeable:
            try:
                tensor = torch.from_numpy(array)
            except ValueError:  # a negative stride, which from_numpy refuses: copied below
                pass
            else:
                return tensor if shared else tensor.clone(memory_format=torch.contiguous_format)
    out = torch.empty(array.shape, dtype=dtype, device=device)
    xp.copyto(_host_array(out, writable=True) if xp is np else xp.from_dlpack(out), array)
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
    return str(getattr(kernel, "__name__", None) or getattr(getattr(kernel, "func", None), "__name__", repr(kernel)))


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
