"""What the tests share: tensors, comparisons with native torch, sharded training, the GPU's residency."""

import contextlib
import copy
import functools
import importlib.util
import re
import types
import typing
import warnings

import pytest
import torch

from .._boundary import host_round_trip

HAS_CUDA = torch.cuda.is_available()
HAS_CUPY = importlib.util.find_spec("cupy") is not None

needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
needs_cupy = pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy (the [cuda12] or [cuda13] extra)")
# The devices this machine has, for `pytest.mark.parametrize("device", DEVICES)`: no test of a device it lacks,
# so that a skip always means something (here: CUDA without CuPy).
DEVICES = ["cpu", *([pytest.param("cuda", marks=needs_cupy)] if HAS_CUDA else [])]


def randn(*shape, dtype=torch.float64, device="cpu"):
    """A random leaf tensor that requires grad."""
    return torch.randn(shape, dtype=dtype, device=device, requires_grad=True)


# Over 3,000 random draws of every starter's half-precision test, the largest error was 0.4%
# of the tensor's scale in float16 and 1.3% in bfloat16.
_HALF_PRECISION_SCALE = {torch.float16: 1e-2, torch.bfloat16: 3e-2}


def outputs(result) -> tuple:
    """An op's result as a tuple of its outputs."""
    return result if isinstance(result, tuple) else (result,)


def mean_square(result) -> torch.Tensor:
    """A scalar loss of a result of one output or several: each float output's mean square, summed."""
    return sum(o.pow(2).mean() for o in outputs(result) if o.dtype.is_floating_point)


def assert_matches(op, native, *inputs, **tolerance):
    """`op` agrees with `native` on every output, and on the gradient of every input that requires grad.

    `tolerance` is assert_close's. In float16 and bfloat16, each tensor is compared to within
    a share of its largest expected value instead: a gradient summed over a batch in half
    precision rounds each term to the scale of the largest, so a small element can carry a
    large one's rounding. Gradients flow from a random cotangent on each float output.
    """

    def assert_close(actual, expected, what: str):
        scale = _HALF_PRECISION_SCALE.get(expected.dtype)
        within = tolerance if scale is None else {"rtol": scale, "atol": scale * expected.detach().abs().max().item()}
        torch.testing.assert_close(actual, expected, **within, msg=lambda message: f"{what}: {message}")

    ours, theirs = outputs(op(*inputs)), outputs(native(*inputs))
    assert len(ours) == len(theirs), f"{len(ours)} outputs, native has {len(theirs)}"
    for k, (actual, expected) in enumerate(zip(ours, theirs, strict=True)):
        assert_close(actual, expected, f"output {k}")
    differentiable = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    pairs = [(a, e) for a, e in zip(ours, theirs, strict=True) if e.requires_grad]
    if differentiable and pairs:
        cotangents = [torch.randn_like(e) for _, e in pairs]
        tensors = [inputs[i] for i in differentiable]
        for i, actual, expected in zip(
            differentiable,
            torch.autograd.grad([a for a, _ in pairs], tensors, cotangents, materialize_grads=True),
            torch.autograd.grad([e for _, e in pairs], tensors, cotangents, materialize_grads=True),
            strict=True,
        ):
            assert_close(actual, expected, f"the gradient of argument {i}")


def tolerances(dtype):
    """Tolerances for comparing FFT and direct sums with native torch in `dtype`."""
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}


@contextlib.contextmanager
def round_trip():
    """CUDA tensors through NumPy/SciPy, without the warning that says so."""
    with host_round_trip(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def assert_stays_on_gpu(step) -> None:
    """`step()` copies nothing between host and GPU memory with CuPy, and does on the round trip."""
    assert host_copies(step) == 0
    with round_trip():
        assert host_copies(step) > 0  # so that the count above can fail


def host_copies(step) -> int:
    """How many copies between host and GPU memory `step()` makes, once warmed up (FFT plans, JIT)."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA], acc_events=True) as profile:
        step()
        torch.cuda.synchronize()
    return sum(("Memcpy HtoD" in event.name or "Memcpy DtoH" in event.name) for event in profile.events())


def _fsdp2(model):
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        fully_shard(layer)  # each layer's parameters are gathered for its forward and freed after
    return fully_shard(model)


def _fsdp1(model):
    from torch.distributed.fsdp import FullyShardedDataParallel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # FSDP1 is deprecated in favour of FSDP2
        return FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)


def _ddp(model):
    return torch.nn.parallel.DistributedDataParallel(model)


SHARDINGS = {"ddp": _ddp, "fsdp2": _fsdp2, "fsdp1": _fsdp1}


def assert_trains_like_native(model, native_forward, x, sharding, steps=3):
    """`model`, wrapped for `sharding`, trains as a copy of it whose op is computed natively.

    `native_forward(module, input)` computes the op's module natively from its parameters; it
    replaces the forward of the model's last layer in the copy. The loss is `mean_square` of the
    model's outputs.
    """
    native_model = copy.deepcopy(model)
    native_model[-1].forward = types.MethodType(native_forward, native_model[-1])
    torch.testing.assert_close(_train(SHARDINGS[sharding](model), x, steps), _train(native_model, x, steps))


def _train(model, x, steps):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = mean_square(model(x))
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def assert_compiled_forward_mode_matches_native(ours, native, x, refusal):
    """Forward mode inside torch.compile gives native's values, or an error that matches `refusal`; never zeros.

    torch 2.13 and 2.14 trace an op's autograd.Function without its jvp, and its kernel op refuses the
    tangent; torch 2.15 runs the jvp. On dual tensors, torch 2.15 stops at an internal check of its own
    where the Function has an output without a derivative (the values an op saves for its derivatives):
    an error too, if not the op's.
    """
    refusal = f"{refusal}|Expected both tensor and its forward grad to be floating point or complex"

    def jvp(fn):
        return lambda x: torch.func.jvp(fn, (x,), (torch.ones_like(x),))[1]

    def dual_tangent(fn):
        def tangent(x):
            with torch.autograd.forward_ad.dual_level():
                dual = torch.autograd.forward_ad.make_dual(x, torch.ones_like(x))
                return tuple(torch.autograd.forward_ad.unpack_dual(o).tangent for o in outputs(fn(dual)))

        return tangent

    for forward_mode in (jvp, torch.func.jacfwd, dual_tangent):
        assert_values_or_refusal(
            lambda mode=forward_mode: torch.compile(mode(ours))(x), lambda mode=forward_mode: mode(native)(x), refusal
        )


def assert_values_or_refusal(compute, expected, refusal: str) -> None:
    """`compute()` gives `expected()`'s values, or raises an error whose message matches `refusal`: never
    other values. Any other error propagates as it is."""
    try:
        result = compute()
    except Exception as error:
        if not re.search(refusal, str(error)):
            raise
    else:
        torch.testing.assert_close(result, expected())


def assert_seen_as_a_torch_function(model, op, x):
    """torch.fx records `op` as one call; a tensor subclass sees the call and gets every output as its own type."""
    expected = model(x)
    traced = torch.fx.symbolic_trace(model)
    assert op in [node.target for node in traced.graph.nodes if node.op == "call_function"]
    torch.testing.assert_close(traced(x), expected)

    class Recording(torch.Tensor):
        calls: typing.ClassVar[list] = []

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            cls.calls.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    assert all(type(o) is Recording for o in outputs(model(x.as_subclass(Recording))))
    assert op in Recording.calls


@functools.cache
def compiled_refusals() -> tuple[type[Exception], ...]:
    """The exceptions torch.compile raises where an op refuses its input; the op's own error comes in them.

    Native ops' errors come as torch.compile raises them for native ops. torch 2.15 may also trace
    into torch.ops.<package>.<op>'s Python implementation, and then reports the op's error inside
    its Unsupported ("Observed exception").
    """
    try:
        torch.compile(torch.fft.rfft2, fullgraph=True, dynamic=False)(torch.ones(3, 4, dtype=torch.complex64))
    except Exception as error:
        return type(error), torch._dynamo.exc.Unsupported
    raise AssertionError("torch.fft.rfft2 took a complex input")
