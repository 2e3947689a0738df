"""The tensor/array boundary: inputs read without copies, outputs in torch's memory, resizable storages, vmap."""

import contextlib
import functools
import threading
import warnings

import numpy as np
import pytest
import scipy.fft
import torch
from torch_scipy_op import Opaque, _boundary, _kernel_ops
from torch_scipy_op._boundary import NUMPY, host_round_trip, run_kernel
from torch_scipy_op._kernel_ops import all_at_once, batch_first, kernel_op
from torch_scipy_op.testing import needs_cuda, needs_cupy
from torch_scipy_op.testing._helpers import round_trip

from reference.bad_fft import bad_fft


def recording_kernel(seen: dict):
    """A kernel that doubles its input and records where its arrays live."""

    def kernel(backend, a):
        result = a * 2
        seen.update(backend=backend, input=_address(a), output=_address(result), array=result)
        if backend.xp is not np:
            seen["stream"] = backend.xp.cuda.get_current_stream().ptr
        return result

    return kernel


def _address(a) -> int:
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def test_cpu_inputs_cross_without_copies_and_storages_stay_resizable():
    """As native ops leave them: FSDP frees a parameter's storage with resize_(0) after an op has read it."""
    seen = {}
    x = torch.randn(3, 4, requires_grad=True)
    y = run_kernel(recording_kernel(seen), x)
    assert seen["backend"] is _boundary.NUMPY
    assert seen["input"] == x.data_ptr()
    torch.testing.assert_close(y, x.detach() * 2)
    assert_resizable(x, y)


@pytest.mark.parametrize("view", [torch.Tensor.conj, torch.neg], ids=["conjugate", "negated"])
def test_a_view_of_a_freed_storage_is_refused_before_it_is_read(view):
    """FSDP frees a sharded parameter with resize_(0): resolving a lazy view of it would read freed memory."""
    x = torch.randn(3, 4, dtype=torch.complex64)
    lazy = view(x) if view is torch.Tensor.conj else torch._neg_view(x)
    x.untyped_storage().resize_(0)
    with pytest.raises(RuntimeError, match=r"has no memory: its storage holds 0 bytes"):
        run_kernel(lambda backend, a: a, lazy)


def test_a_subclass_of_opaque_reaches_the_kernel_as_its_object():
    class Named(Opaque):
        pass

    seen = []
    run_kernel(lambda backend, x, o: seen.append(o) or x, torch.ones(2), Named("the object"))
    assert seen == ["the object"]


def assert_resizable(*tensors):
    for t in tensors:
        storage = t.untyped_storage()
        size = storage.nbytes()
        storage.resize_(0)
        storage.resize_(size)


@pytest.mark.parametrize(
    "kernel",
    [lambda backend, a: a, lambda backend, a: a.reshape(4, 3)[1:], lambda backend, a: (a * 2, a[1:])],
    ids=["the input", "a view of it", "one of two outputs"],
)
def test_output_never_aliases_an_input(kernel):
    x = torch.randn(3, 4)
    outputs = run_kernel(kernel, x)
    expected = kernel(_boundary.NUMPY, x.numpy().copy())
    if not isinstance(outputs, tuple):
        outputs, expected = (outputs,), (expected,)
    for y, array in zip(outputs, expected, strict=True):
        assert not np.shares_memory(y.numpy(), x.numpy())
        torch.testing.assert_close(y, torch.from_numpy(array))


@pytest.mark.parametrize(
    "kernel",
    [
        lambda backend, a: backend.xp.broadcast_to(a[:1], a.shape),
        lambda backend, a: (a * 1)[:1][::-1],
        lambda backend, a: (a * 1)[::-1, ::-2],
        lambda backend, a: backend.xp.asarray(a[0, 0]),
    ],
    ids=["read-only view", "reversed axis of length 1", "negative strides", "0-d"],
)
def test_outputs_of_any_strides_and_flags_become_tensors_without_a_warning(kernel):
    """NumPy calls a reversed axis of length 1 C-contiguous; torch.from_numpy would refuse it, and warn on read-only."""
    x = torch.arange(12.0).reshape(3, 4)
    y = run_kernel(kernel, x)
    expected = kernel(_boundary.NUMPY, x.numpy().copy())
    assert y.shape == expected.shape
    assert y.is_contiguous()
    torch.testing.assert_close(y, torch.tensor(expected.copy()))
    assert_resizable(y)


def test_an_array_of_a_dtype_torch_lacks_gets_a_clear_error():
    def dates(backend, a):
        return a.astype("datetime64[s]")

    with pytest.raises(TypeError, match=r"^dates returned an array of dtype datetime64\[s\], which torch has no dtype"):
        run_kernel(dates, torch.ones(3, dtype=torch.int64))


def test_negative_strides_become_a_contiguous_tensor():
    x = torch.arange(12.0).reshape(3, 4)
    y = run_kernel(lambda backend, a: (a * 1)[::-1, ::-2], x)
    assert y.is_contiguous()
    torch.testing.assert_close(y, x.flip(0, 1)[:, ::2])


def test_plain_values_reach_the_kernel_as_they_are():
    x = torch.randn(3, 4)
    seen = {}

    def kernel(backend, a, scale, flag, mode):
        seen.update(scale=scale, flag=flag, mode=mode)
        return a * scale

    torch.testing.assert_close(run_kernel(kernel, x, 2.5, True, "reflect"), x * 2.5)
    assert seen == {"scale": 2.5, "flag": True, "mode": "reflect"}


def test_several_outputs_come_back_as_a_tuple_of_their_own_shapes():
    x, w = torch.randn(3, 4), torch.randn(4)
    first, second = run_kernel(lambda backend, a, b: (a * b, b * 2), x, w)
    torch.testing.assert_close(first, x * w)
    torch.testing.assert_close(second, w * 2)
    same_shape = run_kernel(lambda backend, a: (a + 1, a - 1), x)
    assert isinstance(same_shape, tuple)
    assert [t.shape for t in same_shape] == [(3, 4), (3, 4)]


def test_zero_dim_results_keep_their_shape():
    x = torch.randn(3, 4, dtype=torch.float64)
    total = run_kernel(lambda backend, a: a.sum(), x)  # NumPy returns a scalar here
    assert total.shape == ()
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, x.sum())
    assert run_kernel(lambda backend, a: backend.xp.asarray(a[0, 0]), x).shape == ()
    halves = run_kernel(lambda backend, a: (a.sum(), a), x.to(torch.bfloat16))
    assert [(h.shape, h.dtype) for h in halves] == [((), torch.bfloat16), ((3, 4), torch.bfloat16)]


@pytest.mark.parametrize("result", [None, [[1.0, 2.0]], 3.0, "text"])
def test_a_kernel_that_returns_no_array_gets_a_clear_error(result):
    def odd_kernel(backend, a):
        return result

    with pytest.raises(TypeError, match=r"^odd_kernel must return a numpy array or a tuple of them, got "):
        run_kernel(odd_kernel, torch.randn(3))


def test_backend_gives_scipy_subpackages_per_device():
    import scipy.ndimage
    import scipy.special

    assert _boundary.NUMPY.ndimage is scipy.ndimage
    assert _boundary.NUMPY.special is scipy.special
    x = torch.randn(6, 7, dtype=torch.float64)
    smoothed = run_kernel(lambda backend, a, sigma: backend.ndimage.gaussian_filter(a, sigma), x, 1.5)
    torch.testing.assert_close(smoothed, torch.from_numpy(scipy.ndimage.gaussian_filter(x.numpy(), 1.5)))
    with pytest.raises(AttributeError, match="scipy has no subpackage 'nothing'"):
        _boundary.NUMPY.nothing  # noqa: B018


def test_round_trip_warning_names_a_partial_kernel(monkeypatch):
    monkeypatch.setattr(_boundary, "_warned_round_trip", set())

    def scaled(backend, a, scale):
        return a * scale

    with pytest.warns(RuntimeWarning, match="^scaled: cuda tensors are copied"):
        _boundary._warn_round_trip(functools.partial(scaled, scale=2.0), torch.device("cuda"))


def scale_and_shift(backend, x, shift, factor):
    return x * factor + shift, x * factor - shift


SCALE_AND_SHIFT = kernel_op(
    "boundary_test::scale_and_shift",
    "(Tensor x, Tensor shift, float factor) -> (Tensor, Tensor)",
    scale_and_shift,
    vmap=all_at_once,
)


def test_kernel_op_registers_a_complete_custom_op():
    """Two outputs, a plain float, the default (broadcast) fake and the all-at-once vmap rule, on every path."""
    x, shift = torch.randn(3, 4), torch.randn(4)
    plus, minus = SCALE_AND_SHIFT(x, shift, 2.0)
    torch.testing.assert_close((plus, minus), (x * 2 + shift, x * 2 - shift))
    torch.library.opcheck(SCALE_AND_SHIFT.op, (x, shift, 2.0))
    batched = torch.func.vmap(SCALE_AND_SHIFT, in_dims=(None, 0, None))(x, torch.randn(5, 4), 2.0)
    assert [t.shape for t in batched] == [(5, 3, 4), (5, 3, 4)]
    compiled = torch.compile(lambda x, s: SCALE_AND_SHIFT(x, s, 2.0)[0] * 1, fullgraph=True)
    torch.testing.assert_close(compiled(x, shift), plus)


def normalized(backend, x):
    return x / x.sum()


NORMALIZED = kernel_op("boundary_test::normalized", "(Tensor x) -> Tensor", normalized)


def test_kernel_op_runs_once_per_sample_under_vmap_by_default():
    """A kernel that sums its whole input: broadcasting over a batch would mix the samples."""
    x = torch.rand(3, 5, dtype=torch.float64)
    torch.testing.assert_close(torch.func.vmap(NORMALIZED)(x), torch.stack([row / row.sum() for row in x]))
    torch.testing.assert_close(torch.func.vmap(NORMALIZED, in_dims=1)(x.T), torch.stack([r / r.sum() for r in x]))


def test_kernel_op_computes_for_inputs_that_require_grad_and_refuses_to_backpropagate():
    """Without a Function to differentiate it: values, and a clear error from .backward() instead of no gradient."""
    x, shift = torch.randn(3, 4, requires_grad=True), torch.randn(4)
    plus, minus = SCALE_AND_SHIFT(x, shift, 2.0)
    torch.testing.assert_close((plus, minus), (x.detach() * 2 + shift, x.detach() * 2 - shift))
    with pytest.raises(RuntimeError, match=r"^torch\.ops\.boundary_test\.scale_and_shift has no derivative of its own"):
        (plus + minus).sum().backward()
    with torch.no_grad():
        assert not SCALE_AND_SHIFT(x, shift, 2.0)[0].requires_grad


def doubled(backend, x):
    return 2 * x


DOUBLED = kernel_op("boundary_test::doubled", "(Tensor x) -> Tensor", doubled)


class _NoOpDispatchMode(torch.utils._python_dispatch.TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _NoOpFunctionMode(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


# Each way a layer can act on an op call: the context it runs in, and the input it gets.
_INTERCEPTED = {
    "autograd": (contextlib.nullcontext, lambda x: x.requires_grad_()),
    "vmap": (contextlib.nullcontext, None),
    "autocast": (lambda: torch.autocast("cpu", dtype=torch.bfloat16), lambda x: x),
    "dispatch mode": (_NoOpDispatchMode, lambda x: x),
    "function mode": (_NoOpFunctionMode, lambda x: x),
    "profiler": (torch.profiler.profile, lambda x: x),
    "negated view": (contextlib.nullcontext, lambda x: x._neg_view()),
    "zero tensor": (contextlib.nullcontext, lambda x: torch._efficientzerotensor(x.shape)),
    "subclass": (contextlib.nullcontext, lambda x: torch.Tensor._make_subclass(_Subclass, x)),
}


class _Subclass(torch.Tensor):
    pass


@pytest.fixture
def dispatched():
    """The calls that reached DOUBLED's operator on the CPU, through a CPU kernel that records them."""
    calls = []
    library = torch.library.Library("boundary_test", "IMPL")

    def cpu_kernel(x):
        calls.append(x.shape)
        return run_kernel(doubled, x)

    library.impl("doubled", cpu_kernel, "CPU")
    yield calls
    library._destroy()


def test_kernel_op_skips_the_dispatcher_in_plain_eager_code(dispatched):
    """Also under inference mode, whichever mode the first call came from."""
    _kernel_ops._plain_dispatch_keys.cache_clear()
    with torch.inference_mode():
        x = torch.randn(3)
        torch.testing.assert_close(DOUBLED(x), 2 * x)
    x = torch.randn(3)
    torch.testing.assert_close(DOUBLED(x), 2 * x)
    with torch.no_grad():
        torch.testing.assert_close(DOUBLED(x.requires_grad_()), 2 * x)
    assert dispatched == []


@pytest.mark.parametrize("layer", _INTERCEPTED)
def test_kernel_op_dispatches_wherever_a_layer_acts_on_the_call(dispatched, layer):
    """The shortcut must never skip autograd, a transform, autocast, a mode, the profiler or a tensor's own keys."""
    context, make_input = _INTERCEPTED[layer]
    x = torch.randn(3)
    with context():
        if make_input is None:
            out = torch.func.vmap(DOUBLED)(x[None])[0]
        else:
            x = make_input(x)
            out = DOUBLED(x)
    torch.testing.assert_close(
        out.detach().float().as_subclass(torch.Tensor),
        2 * x.detach().float().as_subclass(torch.Tensor),
        check_dtype=False,
    )
    assert dispatched, f"{layer}: the call skipped the dispatcher"


@pytest.fixture
def bad_fft_dispatched():
    """bad_fft's kernel-op calls that reached the dispatcher, by role, through CPU kernels that record them."""
    calls = []
    library = torch.library.Library("reference", "IMPL")
    for role, call in bad_fft.declared.kernel_ops.items():

        def recording(*args, role=role, compute=call.compute):
            calls.append(role)
            return compute(*args)

        library.impl(f"bad_fft_{role}", recording, "CPU")
    yield calls
    library._destroy()


def test_a_declared_op_skips_the_dispatcher_in_plain_eager_code_and_only_there(bad_fft_dispatched):
    """Forward, backward and a forward without autograd, each past the dispatcher; under a mode, through it."""
    x = torch.randn(2, 6, 8, requires_grad=True)
    bad_fft(x).sum().backward()
    with torch.no_grad():
        bad_fft(x)
    assert bad_fft_dispatched == []
    with _NoOpDispatchMode():
        bad_fft(x).sum().backward()
        with torch.no_grad():
            bad_fft(x)
    assert bad_fft_dispatched == ["forward", "backward", "forward"]


def test_a_plain_backward_pass_dispatches_where_a_saved_tensor_comes_back_wrapped(bad_fft_dispatched):
    """saved_tensors_hooks may give a saved tensor back as a subclass (as an offloading hook may): the backward
    kernel op then goes through the dispatcher, which hands the subclass its call, as it did in the forward."""
    from torch.testing._internal.two_tensor import TwoTensor

    x = torch.randn(2, 6, 8, requires_grad=True)
    (expected,) = torch.autograd.grad(bad_fft(x).sum(), x)
    assert bad_fft_dispatched == []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: TwoTensor(t.detach(), t.detach())):
        y = bad_fft(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert bad_fft_dispatched == ["backward", "backward"]  # once per part of the TwoTensor
    torch.testing.assert_close(grad.a, expected)
    torch.testing.assert_close(grad.b, expected)


def test_saved_values_keep_the_kernels_memory_and_outputs_get_their_own(monkeypatch):
    """What only the derivatives read crosses without a copy; an output is resizable, in torch's memory (here the
    kernel's `backend.empty`, taken without a copy)."""
    returned = []
    arrays = _boundary._arrays

    def recording(xp, kernel, result):
        results = arrays(xp, kernel, result)
        returned.extend(r.ctypes.data for r in (results if isinstance(results, tuple) else (results,)))
        return results

    monkeypatch.setattr(_boundary, "_arrays", recording)
    y = bad_fft(torch.randn(2, 128, 128, requires_grad=True))  # a magnitude of 64 KiB: in torch's memory
    magnitude, spectrum = returned
    _, saved_spectrum = y.grad_fn.saved_tensors
    assert saved_spectrum.data_ptr() == spectrum
    assert y.data_ptr() == magnitude
    assert_resizable(y)


def _into_empty(backend, x):
    """Results written into `backend.empty`: whole, twice, as a view, and a copy of the input as a saved value."""
    out = backend.xp.multiply(x, 2, out=backend.empty(x.shape, x.dtype))
    return out, out, out.reshape(-1), out[..., :1], x.copy()


def test_a_result_takes_the_memory_of_backend_empty_once_and_whole_and_a_saved_value_never_shares_it():
    x = torch.randn(64, 256)  # 64 KiB: in torch's memory
    whole, again, flat, part, saved = run_kernel(_into_empty, x, owned=3)  # part and saved: saved values
    expected = (2 * x, 2 * x, (2 * x).reshape(-1), (2 * x)[..., :1], x)
    for t, e in zip((whole, again, flat, part, saved), expected, strict=True):
        torch.testing.assert_close(t, e, check_stride=False)
    pointers = [t.data_ptr() for t in (whole, again, flat, part, saved)]
    assert len(set(pointers)) == len(pointers), "only one result may own the buffer; no other may share it"
    assert_resizable(whole, again)


def test_backend_empty_is_torch_memory_from_64_kib():
    """Below, copying a result costs less than making an array in torch's memory."""
    small, large = NUMPY.empty((16383,), np.float32), NUMPY.empty((16384,), np.float32)
    assert small.base is None
    assert type(_boundary._owner(large)) is _boundary._ResultView
    with pytest.raises(TypeError, match=r"^backend.empty: torch has no dtype for <U1$"):
        NUMPY.empty((1 << 16,), "U1")


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
@pytest.mark.parametrize("width", [6, 7])
def test_irfft2_as_a_result_is_in_torch_memory_with_scipys_values(dtype, norm, width):
    half = np.random.default_rng(0).standard_normal((16, 512, width // 2 + 1, 2)).view(np.float64)[..., 0]
    half = (half + 0.5j * half[..., ::-1]).astype(dtype)[:, ::2]  # a strided batch of (256, width // 2 + 1)
    result = NUMPY.irfft2(half, s=(256, width), norm=norm, as_result=True)
    np.testing.assert_array_equal(result, scipy.fft.irfft2(half, s=(256, width), norm=norm))
    assert result.dtype == half.real.dtype
    assert type(_boundary._owner(result)) is _boundary._ResultView, "64 KiB and more: in torch's memory"


def test_irfft2_is_scipys_where_the_private_c2r_does_not_apply_or_answers_otherwise(monkeypatch):
    half = np.random.default_rng(0).standard_normal((64, 129)) + 0j  # 64 KiB and more as a float64 result
    for s in ((64, 255), (64, 256)):  # s's half spectrum, and one that is not
        result = NUMPY.irfft2(half, s=s, as_result=True)
        np.testing.assert_array_equal(result, scipy.fft.irfft2(half, s=s))
        assert (type(_boundary._owner(result)) is _boundary._ResultView) == (s == (64, 256))
    monkeypatch.setattr(_boundary, "_C2R", lambda a, axes, size, forward, inorm, out, workers: out.fill(0) or out)
    _boundary._c2r_agrees.cache_clear()
    try:
        result = NUMPY.irfft2(half, s=(64, 256), as_result=True)
        np.testing.assert_array_equal(result, scipy.fft.irfft2(half, s=(64, 256)))
        assert _boundary._owner(result) is None, "a c2r that gives other values than scipy.fft.irfft2 is not called"
    finally:
        _boundary._c2r_agrees.cache_clear()


def test_a_result_of_backend_empty_reshaped_or_retyped_in_place_is_copied():
    """Its shape and dtype can be set in place, where its base stays the tensor's view."""
    x = torch.randn(64, 256)
    for change in ("shape", "dtype"):

        def kernel(backend, x, change=change):
            out = backend.empty(x.shape, x.dtype)
            np.multiply(x, 2, out=out)
            if change == "shape":
                out.shape = (4, 4096)
            else:
                out.dtype = np.int32
            return out

        result = run_kernel(kernel, x)
        expected = kernel(NUMPY, x.numpy())
        np.testing.assert_array_equal(result.numpy(), expected)
        assert result.shape == expected.shape
        assert result.numpy().dtype == expected.dtype


def test_a_saved_value_as_strided_from_a_result_does_not_share_its_memory():
    """as_strided's arrays have a base that is not an array, whose own base is the result's."""

    def kernel(backend, x):
        out = backend.empty(x.shape, x.dtype)
        np.multiply(x, 2, out=out)
        return out, np.lib.stride_tricks.as_strided(out, shape=(4,), strides=(4,))

    y, saved = run_kernel(kernel, torch.randn(64, 256), owned=1)
    y.add_(1)
    torch.testing.assert_close(saved, y[0, :4] - 1)


def test_bad_fft_backward_writes_its_gradient_into_torch_memory(monkeypatch):
    """Its gradient is irfft2's output: copying 4 MiB there cost about a tenth of the step."""
    in_torch_memory = []
    new_tensor = _boundary._new_tensor

    def spy(xp, kernel, array, *args, **kwargs):
        in_torch_memory.append(type(_boundary._owner(array)) is _boundary._ResultView)
        return new_tensor(xp, kernel, array, *args, **kwargs)

    monkeypatch.setattr(_boundary, "_new_tensor", spy)
    x = torch.randn(1, 256, 256, requires_grad=True)
    bad_fft(x).sum().backward()
    assert in_torch_memory == [True, False, True], "the output, the spectrum (a saved value, shared), the gradient"


# The private torch names the shortcut reads. A torch release may rename or change any of them.
_SHORTCUT_PRIVATES = [
    "_functorch_transforms_active",
    "_any_autocast_enabled",
    "_dispatch_mode_depth",
    "_function_mode_enabled",
    "_jit_tracing_state",
    "_profiler_enabled",
    "_compile_frame_hook",
    "_dispatch_keys",
    "_raw_keys",
]


class _DoubledFunction(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return DOUBLED(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


_apply_doubled = _kernel_ops.function_applier(_DoubledFunction)


@pytest.mark.parametrize("broken", ["missing", "raises"])
@pytest.mark.parametrize("name", _SHORTCUT_PRIVATES)
def test_a_missing_or_changed_private_torch_name_costs_speed_not_correctness(dispatched, monkeypatch, name, broken):
    """Each call then takes the dispatcher, and an op's Function its general form: the same values and gradients."""
    assert getattr(_kernel_ops, name) is not None, f"this torch lacks {name}: update _kernel_ops"

    def changed(*args):
        raise RuntimeError(f"{name} changed")

    monkeypatch.setattr(_kernel_ops, name, None if broken == "missing" else changed)
    _kernel_ops._plain_dispatch_keys.cache_clear()
    x = torch.randn(3, requires_grad=True)
    y = _apply_doubled(x)
    torch.testing.assert_close(y, 2 * x.detach())
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, torch.full_like(x, 2.0))
    with torch.no_grad():
        torch.testing.assert_close(DOUBLED(x), 2 * x.detach())
    assert len(dispatched) == 2, "a call skipped the dispatcher on a broken private name"
    _kernel_ops._plain_dispatch_keys.cache_clear()


def test_private_names_that_a_torch_lacks_are_none():
    assert _kernel_ops._private("torch._C", "_no_such_name") is None
    assert _kernel_ops._private("torch._no_such_module", "anything") is None


def test_kernel_op_compiles_across_graph_breaks():
    """Each graph around a graph break calls the op (Dynamo never traces into the kernel), with eager's values."""
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    def step(x):
        y = DOUBLED(x) + 1
        torch._dynamo.graph_break()
        return DOUBLED(y).sin()

    x = torch.randn(5)
    torch.testing.assert_close(torch.compile(step, backend=recording_backend)(x), step(x))
    called = [[node.target for node in graph.graph.nodes if node.op == "call_function"] for graph in graphs]
    assert len(graphs) == 2, called
    assert all(DOUBLED.op in targets for targets in called), called


def test_kernel_op_dispatches_under_a_compile_frame_hook(dispatched):
    """As in code that a compiled function runs untraced: the hook would trace the kernel's NumPy calls."""
    x = torch.randn(3)
    torch.testing.assert_close(torch._dynamo.run(DOUBLED)(x), 2 * x)  # the hook runs compiled code, compiles none
    assert dispatched, "the call skipped the dispatcher, which calls the implementation that Dynamo will not trace"


def test_round_trip_warns_once_per_kernel_and_names_the_extra(monkeypatch):
    monkeypatch.setattr(_boundary, "_warned_round_trip", set())
    cuda = torch.device("cuda")

    def some_kernel(backend, a):
        return a

    with pytest.warns(RuntimeWarning, match=r"some_kernel: cuda tensors are copied .* pip install '.+\[cuda\d+\]'"):
        _boundary._warn_round_trip(some_kernel, cuda)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _boundary._warn_round_trip(some_kernel, cuda)


def test_host_round_trip_is_a_setting_of_each_thread():
    """One thread inside host_round_trip() changes nothing for another, however they interleave."""
    inside, leave = threading.Event(), threading.Event()
    seen = {}

    def other_thread():
        with host_round_trip():
            inside.set()
            leave.wait()
            seen["other, inside"] = _boundary._use_cupy.get()

    thread = threading.Thread(target=other_thread)
    thread.start()
    inside.wait()
    with host_round_trip():
        seen["this, inside"] = _boundary._use_cupy.get()
    seen["this, after"] = _boundary._use_cupy.get()
    leave.set()
    thread.join()
    assert seen == {"other, inside": False, "this, inside": False, "this, after": True}


def test_warnings_policy_fails_on_ours_and_ignores_torch_internals():
    """pyproject.toml's filterwarnings: a warning from an op's own code fails the suite, torch's own notes do not."""
    with pytest.raises(Warning, match="Casting complex values to real discards the imaginary part"):
        run_kernel(lambda backend, a: (a * 1j).astype(a.dtype), torch.ones(3))
    for module in ("torch", "torch._subclasses.meta_utils"):
        warnings.warn_explicit("a note on torch's internals", UserWarning, "torch.py", 1, module=module)
    with pytest.raises(UserWarning):
        warnings.warn_explicit("a warning from a package named like torch", UserWarning, "x.py", 1, module="torchy")


@pytest.mark.parametrize(
    "body",
    [
        lambda xp, a: xp.log(a * 0),
        lambda xp, a: xp.sin(a * xp.inf),
        lambda xp, a: (a * xp.inf) - (a * xp.inf),
        lambda xp, a: a.astype(xp.float32) * xp.float32(3e38) * 10,
        lambda xp, a: a * 1e-300 * 1e-300,
        lambda xp, a: a / 0,
    ],
    ids=["divide by zero", "invalid", "inf - inf", "overflow", "underflow", "x / 0"],
)
def test_kernels_give_inf_and_nan_silently_as_native_does(body):
    """NumPy warns where native torch does not; under a warnings-are-errors policy that would fail a user's suite."""
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    settings = np.geterr()
    with np.errstate(all="raise"):
        expected = None
        with pytest.raises(FloatingPointError):
            expected = body(np, x.numpy())
    assert expected is None
    result = run_kernel(lambda backend, a: body(backend.xp, a), x)
    assert not result.isfinite().all() or (result == 0).all()
    assert np.geterr() == settings  # the setting stays inside the kernel's call


@pytest.mark.parametrize("through", ["context variable", "np.errstate"])
def test_kernels_run_under_errstate_ignore_and_leave_the_caller_s_state(through, monkeypatch):
    """Where NumPy's error state is set through its private context variable, the kernel sees what
    np.errstate(all="ignore") gives (the caller's buffer size kept), and the caller's state is back after
    the call, a raising one too; where not, np.errstate does it."""
    if through == "np.errstate":
        monkeypatch.setattr(_boundary, "_FP_ERRORS", None)
    elif _boundary._FP_ERRORS is None:
        pytest.skip(f"NumPy {np.__version__} has no error-state context variable")
    seen = []

    def kernel(backend, a):
        seen.append((np.geterr(), np.getbufsize()))
        if a[0] < 0:
            raise ArithmeticError("raised inside the kernel")
        return a * 2

    before = np.getbufsize()
    with np.errstate(over="raise", divide="warn"):
        np.setbufsize(4096)
        try:
            caller = np.geterr()
            run_kernel(kernel, torch.ones(2))
            with pytest.raises(ArithmeticError, match="inside the kernel"):
                run_kernel(kernel, -torch.ones(2))
            assert np.geterr() == caller
        finally:
            np.setbufsize(before)
    ignoring = {"divide": "ignore", "over": "ignore", "under": "ignore", "invalid": "ignore"}
    assert seen == [(ignoring, 4096)] * 2


def test_a_numpy_whose_error_state_variable_acts_otherwise_gets_np_errstate(monkeypatch):
    """The context variable is used only where setting it makes np.geterr() say "ignore" for every error."""
    if _boundary._FP_ERRORS is None:
        pytest.skip(f"NumPy {np.__version__} has no error-state context variable")
    from numpy._core import _ufunc_config

    assert _boundary._fp_error_state() == (_boundary._FP_ERRORS, _boundary._ignoring_fp_errors)
    make = _ufunc_config._make_extobj
    monkeypatch.setattr(_ufunc_config, "_make_extobj", lambda **kwargs: make(divide="warn"))
    assert _boundary._fp_error_state() == (None, None)
    monkeypatch.delattr(_ufunc_config, "_make_extobj")
    assert _boundary._fp_error_state() == (None, None)


@pytest.mark.parametrize(
    ("shapes", "in_dims", "expected"),
    [
        ([(4, 5, 6)], (1,), [(5, 4, 6)]),
        ([(5, 6, 7), (3, 4)], (0, None), [(5, 6, 7), (1, 3, 4)]),
        ([(6, 7), (3, 5, 4)], (None, 1), [(1, 6, 7), (5, 3, 4)]),
        ([(2, 6, 7, 5), (5, 3, 4)], (3, 0), [(5, 2, 6, 7), (5, 1, 3, 4)]),
    ],
)
def test_batch_first_lines_up_logical_dims(shapes, in_dims, expected):
    tensors = tuple(torch.randn(shape) for shape in shapes)
    assert [tuple(t.shape) for t in batch_first(tensors, in_dims)] == expected


def test_batch_first_passes_plain_values_through():
    x, p = torch.randn(4, 5, 6), torch.randn(1)
    lined_up = batch_first((x, 0.5, p, "mode"), (1, None, None, None))
    assert [getattr(a, "shape", a) for a in lined_up] == [(5, 4, 6), 0.5, (1, 1, 1), "mode"]


@pytest.mark.cuda
@needs_cuda
@needs_cupy
def test_cuda_inputs_cross_without_copies_on_the_current_stream():
    seen = {}
    x = torch.randn(3, 4, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        y = run_kernel(recording_kernel(seen), x)
    assert seen["backend"] is _boundary.CUPY
    assert seen["stream"] == stream.cuda_stream
    assert seen["input"] == x.data_ptr()
    torch.cuda.synchronize()
    torch.testing.assert_close(y, x * 2)
    assert_resizable(x, y)


@pytest.mark.cuda
@needs_cuda
def test_host_round_trip_on_request():
    seen = {}
    x = torch.randn(3, 4, device="cuda")
    with round_trip():
        y = run_kernel(recording_kernel(seen), x)
    assert seen["backend"] is _boundary.NUMPY
    assert y.device == x.device
    torch.testing.assert_close(y, x * 2)


def scaled_hypot(xp, a, b, scale):
    """An elementwise body with two arrays and a plain number, as `ArrayBackend.fuse` takes."""
    return xp.sqrt(a * a + b * b) * scale


def test_fuse_on_numpy_runs_the_body_as_written():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4), dtype=np.float32), rng.random(4, dtype=np.float32)
    fused = _boundary.NUMPY.fuse(scaled_hypot)(a, b, 0.5)
    np.testing.assert_array_equal(fused, scaled_hypot(np, a, b, 0.5))
    assert fused.dtype == np.float32


@pytest.mark.cuda
@needs_cuda
@needs_cupy
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fuse_on_cupy_matches_the_unfused_body(dtype):
    """One fused kernel gives the values and dtype of the same body run op by op."""
    cupy = _boundary.cupy
    a, b = cupy.random.rand(3, 4).astype(dtype), cupy.random.rand(4).astype(dtype)
    fused = _boundary.CUPY.fuse(scaled_hypot)
    assert fused is _boundary.CUPY.fuse(scaled_hypot)  # compiled once
    result, expected = fused(a, b, 0.5), scaled_hypot(cupy, a, b, 0.5)
    assert result.dtype == expected.dtype == dtype
    cupy.testing.assert_allclose(result, expected, rtol=1e-6)


def test_cupy_gets_memory_on_a_16_byte_boundary():
    """cuFFT refuses a pointer off one (a float64 view at an odd offset, as vmap's per-sample slices make)."""
    base = torch.zeros(12, dtype=torch.float64)
    aligned, odd = base[2:7], base[1:6]
    assert _boundary._aligned(aligned) is aligned
    copy = _boundary._aligned(odd)
    assert copy.data_ptr() % 16 == 0
    torch.testing.assert_close(copy, odd)
