"""The contract every op keeps, whatever its math: one suite, which each op's test file declares into.

An op's test file subclasses `OpContract` and declares, as PyTorch's OpInfo does::

    class TestContract(OpContract):
        op = staticmethod(my_op)          # the public function
        native = staticmethod(native)     # torch's version, or a slow but obviously correct one
        samples = [{"x": (8, 8), "weight": (8,), "frequency": 0.7}, ...]

A sample gives each argument by name: a shape (a tuple) for a tensor input, which becomes a
random float tensor that requires grad; a function `(dtype, device) -> tensor` for one that
needs particular values; the value itself otherwise. Arguments left out take their
defaults. The first sample's first differentiable data tensor (a tensor input that is not one
of the op's `parameters`, nor `nondifferentiable`) has a leading batch dim, which the per-sample
checks vmap over, and which empty-batch checks set to 0. Values, gradients and every derivative the op declares are
compared with native's on every sample, so give a sample for each value of a plain argument
that changes the math (a flag, a mode); the numerical checks (gradcheck) take the first.

What the op supports comes from its declaration (`declare_op`): forward mode where it has a
jvp kernel, second order where it also has a curvature kernel, its parameters, and the inputs
it has no derivative in (`nondifferentiable`), which the derivative checks hold fixed and the
others (vmap, bad inputs, opcheck) take as any input. Each check runs where the op supports
it, and elsewhere checks that the op refuses with its one clear error. Every check runs with
the op's strict checks on (`strict_checks`). Optional attributes: `bad_inputs`, `benchmark_samples`, `module`,
`module_input_domain`, `half_precision`, `tolerances`. Hessians take the smallest sample whose tensors have
at least two elements each.

The module checks (training under DDP and FSDP, compile, export, torch.fx, the meta device) take the
op's nn.Module from `module()`, which gives the module, the shape of its input, and `native(module, x)`,
the module computed natively. They put a torch.nn.Linear in front of it and feed that N(0, 1) inputs;
`module_input_domain`, a function, maps the Linear's outputs into the inputs the module takes::

    module_input_domain = staticmethod(torch.nn.functional.softplus)  # x > 0; torch.sigmoid for 0 < x < 1

The module may return a tuple of outputs; the checks compare each, and backpropagate the sum of each
float output's mean square.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import runpy
import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest
import torch
import torch._dynamo
import torch._functorch.config
import torch._inductor.config

from .. import _kernel_ops
from .._checks import FLOAT_DTYPES, strict_checks
from ._helpers import (
    DEVICES,
    HAS_CUDA,
    SHARDINGS,
    assert_compiled_forward_mode_matches_native,
    assert_matches,
    assert_seen_as_a_torch_function,
    assert_stays_on_gpu,
    assert_trains_like_native,
    assert_values_or_refusal,
    compiled_refusals,
    mean_square,
    needs_cupy,
    outputs,
    round_trip,
    tolerances,
)

# A bad input: the sample, the error type, and a regular expression its message matches after "<op>: ".
BadInput = tuple[dict[str, Any], type[Exception], str]

_NOT_A = {"float": 1j, "int": 1.5, "SymInt": 1.5, "List[int]": "a", "bool": "yes", "str": 1}


def _batch_dim(kind: str):
    """A dynamic batch dim for torch.export: one it infers (Dim.AUTO), or one declared from 1 to 64."""
    return torch.export.Dim.AUTO if kind == "auto" else torch.export.Dim("batch", min=1, max=64)


class _Map(torch.nn.Module):
    """A function as a layer: `module_input_domain` between the module checks' Linear and the module."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


@contextlib.contextmanager
def on_its_own():
    """How each check runs: under one seed; compiling afresh (compiles of torch.ops.<namespace>.<op> across
    many checks would add up past Dynamo's recompile limit), with torch.compile's on-disk caches off (they key
    a graph by the ops' names, not their schemas or fakes: pytorch/pytorch#187319); and with the op's strict
    checks on: each kernel's results against its fake on every call, and its inputs unchanged."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    with (
        strict_checks(),
        torch._inductor.config.patch(fx_graph_cache=False),
        torch._functorch.config.patch(enable_autograd_cache=False),
    ):
        yield


@contextlib.contextmanager
def one_process_group():
    """A one-process gloo group on the CPU, as DDP and FSDP need; the one already there, if any."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("this torch has no torch.distributed")
    if dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


class OpContract:
    """One pytest suite that every declared op keeps: subclass it as `class TestContract(OpContract)` and set
    `op`, `native` and `samples` (and any optional attribute), as the description below says."""

    op: Callable[..., Any]
    native: Callable[..., Any]
    samples: Sequence[dict[str, Any]]
    # Inputs the op refuses beyond the shared rules (float tensors of one dtype and device, data that
    # broadcasts, each argument of its schema type), which the contract derives from the schema. Each is
    # (sample, error type, regular expression), the expression matched from the start of the message after
    # "<op>: ": ({"x": (3,), "k": (2, 2)}, ValueError, "k must have one dim").
    bad_inputs: Sequence[BadInput] = ()
    # Larger samples for the benchmark (torch_scipy_op.testing.benchmark); the tests run it on `samples`.
    benchmark_samples: Sequence[dict[str, Any]] = ()
    # The op's nn.Module: `module()` gives (a module, an input's shape, `native(module, x)`).
    module: Callable[[], tuple[torch.nn.Module, tuple[int, ...], Callable[..., Any]]] | None = None
    # Maps any real tensor into the module's inputs (see the module docstring); None: the module takes any.
    module_input_domain: Callable[[torch.Tensor], torch.Tensor] | None = None
    half_precision: bool = True
    tolerances: ClassVar[dict[torch.dtype, dict[str, float]]] = {}

    def __init_subclass__(cls, **kwargs):
        """Refuses a value the contract does not read (a misspelt `half_precison`, a `torchscript` it dropped),
        which would otherwise pass unnoticed; methods, such as tests of the op's own, are the subclass's own."""
        super().__init_subclass__(**kwargs)
        known = {*OpContract.__annotations__, "pytestmark"}
        unknown = [
            name
            for name, value in vars(cls).items()
            if not name.startswith("_") and name not in known and not callable(value)
            and not isinstance(value, (staticmethod, classmethod, property))
        ]  # fmt: skip
        if unknown:
            raise TypeError(
                f"{cls.__name__}: {', '.join(unknown)} is not an attribute OpContract reads; "
                f"it reads {', '.join(OpContract.__annotations__)}"
            )

    # ------------------------------------------------------------------
    # The fixtures of the contract's checks; they apply to nothing else.
    # ------------------------------------------------------------------

    @pytest.fixture(params=DEVICES)
    def device(self, request):
        return request.param

    @pytest.fixture(autouse=True)
    def _each_check_on_its_own(self):
        with on_its_own():
            yield

    # ------------------------------------------------------------------
    # What the declaration says
    # ------------------------------------------------------------------

    @property
    def declared(self):
        return type(self).op.declared

    @property
    def name(self) -> str:
        return self.declared.name

    @property
    def has_jvp(self) -> bool:
        return "jvp" in self.declared.roles

    @property
    def has_second_order(self) -> bool:
        return self.has_jvp and "curvature" in self.declared.roles

    def call(self, *args):
        return type(self).op(*args)

    def call_native(self, *args):
        return type(self).native(*args)

    def args(self, sample, dtype=torch.float64, device="cpu", requires_grad=True) -> list:
        """The sample's arguments by position, in the schema's order, defaults filled in."""
        args = []
        for a in self.declared.arguments:
            value = sample.get(a.name, a.default) if a.has_default else sample[a.name]
            if a.is_tensor and isinstance(value, tuple):
                value = torch.randn(value, dtype=dtype, device=device)
            elif a.is_tensor and callable(value):
                value = value(dtype, device)
            if isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
                value = value.detach().requires_grad_(requires_grad and a.name not in self.declared.nondifferentiable)
            args.append(value)
        return args

    def tensor_positions(self, args) -> list[int]:
        return [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

    def differentiable_positions(self, args) -> list[int]:
        """The tensor arguments the op has derivatives in: all but those it declares `nondifferentiable`."""
        names = [a.name for a in self.declared.arguments]
        return [i for i in self.tensor_positions(args) if names[i] not in self.declared.nondifferentiable]

    def over_tensors(self, fn, args):
        """`fn` as a function of the differentiable tensor arguments alone, the others fixed, and those tensors."""
        positions = self.differentiable_positions(args)

        def of_tensors(*tensors):
            full = list(args)
            for i, t in zip(positions, tensors, strict=True):
                full[i] = t
            return fn(*full)

        return of_tensors, [args[i] for i in positions]

    def of_tensors(self, op, sample, device, requires_grad=False):
        """`op` and `native` as functions of the sample's tensor inputs alone, its other arguments fixed,
        and those tensors."""
        args = self.args(sample, device=device, requires_grad=requires_grad)
        ours, tensors = self.over_tensors(op, args)
        theirs, _ = self.over_tensors(self.call_native, args)
        return ours, theirs, tensors

    def float_outputs(self, fn):
        """`fn` with its float outputs only (not an index): what derivatives are taken of."""

        def float_only(*args):
            kept = tuple(o for o in outputs(fn(*args)) if o.dtype.is_floating_point)
            return kept[0] if len(kept) == 1 else kept

        return float_only

    def loss(self, fn):
        """A scalar of `fn`'s float outputs whose derivatives of every order are nonzero."""

        def loss(*args):
            return sum(o.pow(2).sum() for o in outputs(self.float_outputs(fn)(*args)))

        return loss

    def small_sample(self) -> dict[str, Any]:
        """The sample with the fewest elements whose tensors have at least two each: for Hessians, whose
        cost grows with the square of the size."""
        sizes: list[tuple[int, int, dict[str, Any]]] = []
        for sample in self.samples:
            tensors = [self.args(sample)[i] for i in self.tensor_positions(self.args(sample))]
            if all(t.numel() >= 2 for t in tensors):
                sizes.append((sum(t.numel() for t in tensors), len(sizes), sample))
        return min(sizes)[2] if sizes else self.samples[0]

    def tolerance(self, dtype) -> dict[str, float]:
        return self.tolerances.get(dtype) or tolerances(dtype)

    def refusal(self, kernel: str) -> str:
        return rf"{self.name}: .* needs a {kernel} kernel, which the op does not declare"

    def pytest_generate_tests(self, metafunc):
        if "sample" in metafunc.fixturenames:
            metafunc.parametrize("sample", self.samples, ids=[f"sample{i}" for i in range(len(self.samples))])
        cases = self.shared_bad_inputs() + list(self.bad_inputs)
        if "bad" in metafunc.fixturenames:
            metafunc.parametrize("bad", cases, ids=[f"bad{i}" for i in range(len(cases))])
        if "bad_tensors" in metafunc.fixturenames:
            tensors = [case for case in cases if self._well_typed(case[0])]
            metafunc.parametrize("bad_tensors", tensors, ids=[f"bad{i}" for i in range(len(tensors))])
        if "vmapped" in metafunc.fixturenames:
            metafunc.parametrize("vmapped", self.vmapped())

    def vmapped(self) -> list[str]:
        """What the vmap check maps over, in turn: each tensor input the first sample gives, then all of them."""
        names = [a.name for a in self.declared.arguments if a.is_tensor and self.samples[0].get(a.name) is not None]
        return [*names, "all"]

    def batch_argument(self, sample) -> str:
        """The tensor input whose leading dim is a batch dim: the first differentiable one that is data, not a
        parameter."""
        names = list(self._shapes(sample, differentiable=True))
        return next((n for n in names if n not in self.declared.parameters), names[0])

    def with_batch(self, sample, size: int) -> dict[str, Any]:
        """`sample` with a new leading dim of `size` on its batch argument, of values drawn as its own are."""
        batch = self.batch_argument(sample)
        value = sample[batch]
        if isinstance(value, tuple):
            return {**sample, batch: (size, *value)}
        return {**sample, batch: lambda dtype, device: torch.stack([value(dtype, device) for _ in range(size)])}

    def batch_in_dims(self, sample) -> tuple[int | None, ...]:
        """vmap's in_dims for a function of the sample's tensors (as `of_tensors` gives): its batch dim."""
        batch = self.batch_argument(sample)
        return tuple(0 if name == batch else None for name in self._shapes(sample, differentiable=True))

    def _shapes(self, sample, differentiable=False) -> dict[str, tuple[int, ...]]:
        """The shape of each tensor input of `sample` (not an absent optional one), by name; or of each
        differentiable one."""
        args = self.args(sample, requires_grad=False)
        positions = self.differentiable_positions(args) if differentiable else self.tensor_positions(args)
        return {self.declared.arguments[i].name: tuple(args[i].shape) for i in positions}

    def shared_bad_inputs(self) -> list[BadInput]:
        """The rules every op shares, on the first sample: each argument of its schema type, float tensors
        of the first tensor's dtype."""
        sample, cases = self.samples[0], list[BadInput]()
        shapes = self._shapes(sample)
        tensors = list(shapes)
        for a in self.declared.arguments:
            if a.is_tensor and a.name in tensors:
                shape = shapes[a.name]
                ints = lambda dtype, device, shape=shape: torch.ones(shape, dtype=torch.int64)  # noqa: E731
                cases.append(({**sample, a.name: ints}, TypeError, f"{a.name} must be float16, bfloat16, float32"))
                cases.append(({**sample, a.name: [1.0]}, TypeError, f"{a.name} must be a torch.Tensor, got list"))
                if a.name != tensors[0]:
                    wider = lambda dtype, device, shape=shape: torch.ones(shape, dtype=torch.float64)  # noqa: E731
                    message = f"{a.name} must have the {tensors[0]}'s dtype torch.float32, got torch.float64"
                    cases.append(({**sample, a.name: wider}, TypeError, message))
            elif not a.is_tensor and a.type.removeprefix("Optional[").removesuffix("]") in _NOT_A:
                wrong = _NOT_A[a.type.removeprefix("Optional[").removesuffix("]")]
                cases.append(({**sample, a.name: wrong}, TypeError, f"{a.name} must be a"))
        return cases

    # ------------------------------------------------------------------
    # Values
    # ------------------------------------------------------------------

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_values_and_gradients_match_native(self, sample, dtype, device):
        args = self.args(sample, dtype, device)
        assert_matches(self.call, self.call_native, *args, **self.tolerance(dtype))

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_eager_shortcut_matches_the_dispatched_path(self, sample, dtype, device, monkeypatch):
        """Plain eager code calls the kernels past the dispatcher and applies a leaner autograd.Function: the
        same values, gradients and second derivatives, to the last bit, as every call through the dispatcher."""

        def run():
            torch.manual_seed(0)
            args = self.args(sample, dtype, device)
            inputs = [args[i] for i in self.differentiable_positions(args)]
            with torch.no_grad():
                untracked = outputs(self.call(*args))
            tracked = outputs(self.float_outputs(self.call)(*args))
            ones = [torch.ones_like(o) for o in tracked]
            grads = torch.autograd.grad(tracked, inputs, ones, retain_graph=True)  # a plain eager backward pass
            graphed = torch.autograd.grad(tracked, inputs, ones, create_graph=True)
            second = []
            if self.has_second_order:
                second = torch.autograd.grad(sum(g.pow(2).sum() for g in graphed), inputs, allow_unused=True)
            return [*untracked, *tracked, *grads, *graphed, *second]

        shortcut = run()
        monkeypatch.setattr(_kernel_ops, "_dispatch_mode_depth", lambda: 1)  # as under a mode: every call dispatches
        for ours, dispatched in zip(shortcut, run(), strict=True):
            torch.testing.assert_close(ours, dispatched, rtol=0, atol=0, equal_nan=True)

    @pytest.mark.parametrize("view", ["strided", "expanded", "transposed"])
    def test_non_contiguous_inputs(self, view, device):
        """Every tensor input a view: every other element, one sample expanded over the first dim (stride 0),
        or the last two dims transposed. Each kernel gets the values, whatever the memory layout."""
        args = self.args(self.samples[0], device=device)
        for i in self.tensor_positions(args):
            t, grad = args[i].detach(), args[i].requires_grad
            if view == "strided" and t.numel() > 1:
                args[i] = torch.stack([t, torch.zeros_like(t)], dim=-1).requires_grad_(grad)[..., 0]
            elif view == "expanded" and t.dim() >= 1 and t.shape[0] > 1:
                args[i] = t[:1].clone().requires_grad_(grad).expand_as(t)
            elif view == "transposed" and t.dim() >= 2 and t.shape[-1] > 1 and t.shape[-2] > 1:
                args[i] = t.transpose(-1, -2).contiguous().requires_grad_(grad).transpose(-1, -2)
            else:
                continue
            assert not args[i].is_contiguous()
        assert_matches(self.call, self.call_native, *args)

    def test_empty_batch(self, device):
        """A new leading dim of size 0 on the batch argument: native's shapes (from the meta device: some builds
        of native FFTs fail on an empty batch), and empty gradients."""
        sample = dict(self.samples[0])
        batch = self.batch_argument(sample)
        sample[batch] = (0, *self._shapes(sample)[batch])
        args = self.args(sample, device=device)
        results = outputs(self.call(*args))
        expected = outputs(self.call_native(*self.args(sample, device="meta")))
        assert [(o.shape, o.dtype) for o in results] == [(o.shape, o.dtype) for o in expected]
        inputs = [args[i] for i in self.differentiable_positions(args)]
        grads = torch.autograd.grad(self.loss(self.call)(*args), inputs, materialize_grads=True)
        assert [g.shape for g in grads] == [t.shape for t in inputs]
        torch.library.opcheck(self.declared.op, tuple(args))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_is_computed_in_float32(self, dtype, device):
        if not self.half_precision:
            pytest.skip("the op does not take half precision")
        args = self.args(self.samples[0], dtype, device)

        def in_float32(*args):
            wide = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
            return tuple(o.to(dtype) if o.dtype.is_floating_point else o for o in outputs(self.call_native(*wide)))

        assert_matches(lambda *a: outputs(self.call(*a)), in_float32, *args)

    def test_autocast_runs_in_float32(self, device):
        """Under autocast, float inputs of mixed dtypes are taken and computed in float32, values and gradients."""
        args = self.args(self.samples[0], torch.float32, device)
        first = self.tensor_positions(args)[0]
        args[first] = args[first].detach().to(torch.bfloat16).requires_grad_(args[first].requires_grad)

        def under_autocast(*args):
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                return self.call(*args)

        def in_float32(*args):
            return self.call_native(*[a.float() if isinstance(a, torch.Tensor) else a for a in args])

        assert all(o.dtype != torch.bfloat16 for o in outputs(under_autocast(*args)))
        assert_matches(under_autocast, in_float32, *args, rtol=1e-4, atol=1e-4)

    def test_autocast_never_casts_float64(self, device):
        """As native ops under autocast: float64 inputs are computed and returned in float64."""
        args = self.args(self.samples[0], torch.float64, device)

        def under_autocast(*args):
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                return self.call(*args)

        assert all(o.dtype == torch.float64 for o in outputs(under_autocast(*args)) if o.dtype.is_floating_point)
        assert_matches(under_autocast, self.call_native, *args)

    def test_outputs_own_their_memory(self, device):
        """New storages for outputs and gradients, none shared with an input, each resizable (FSDP frees them)."""
        args = self.args(self.samples[0], device=device)
        inputs = [args[i] for i in self.differentiable_positions(args)]
        results = outputs(self.call(*args))
        grads = torch.autograd.grad(self.loss(self.call)(*args), inputs)
        tensors = [*inputs, *results, *grads]
        assert len({t.untyped_storage().data_ptr() for t in tensors}) == len(tensors)
        for t in [*results, *grads]:
            t.detach().untyped_storage().resize_(0)

    def test_meta_device_gives_native_shapes_without_computing(self):
        args = self.args(self.samples[0], device="meta")
        ours, theirs = outputs(self.call(*args)), outputs(self.call_native(*args))
        assert [(o.device.type, o.shape, o.dtype) for o in ours] == [(o.device.type, o.shape, o.dtype) for o in theirs]
        inputs = [args[i] for i in self.differentiable_positions(args)]
        grads = torch.autograd.grad(self.loss(self.call)(*args), inputs)
        assert [(g.device.type, g.shape) for g in grads] == [("meta", t.shape) for t in inputs]

    # ------------------------------------------------------------------
    # Derivatives
    # ------------------------------------------------------------------

    def test_gradcheck(self, device):
        """Reverse mode, batched gradients (vmap over the backward), and forward mode where the op has it."""
        fn, tensors = self.over_tensors(self.float_outputs(self.call), self.args(self.samples[0], device=device))
        assert torch.autograd.gradcheck(fn, tensors, check_forward_ad=self.has_jvp, check_batched_grad=True)

    def test_gradgradcheck_or_a_clear_refusal(self, device):
        fn, tensors = self.over_tensors(self.float_outputs(self.call), self.args(self.samples[0], device=device))
        if self.has_second_order:
            assert torch.autograd.gradgradcheck(fn, tensors, check_fwd_over_rev=True, check_rev_over_rev=True)
        else:
            grads = torch.autograd.grad(self.loss(fn)(*tensors), tensors, create_graph=True)
            with pytest.raises(RuntimeError, match=self.refusal("(jvp|curvature)")):
                torch.autograd.grad(sum(g.sum() for g in grads), tensors)

    def test_every_derivative_matches_native_on_every_sample(self, sample, device):
        """Forward mode, and second order both ways (hvp, forward over reverse), against native on each sample:
        the numerical checks take the first, and a plain argument (a flag, a mode) may change the math."""
        fn, native, tensors = self.of_tensors(self.call, sample, device)
        moves = tuple(torch.randn_like(t) for t in tensors)
        if self.has_jvp:
            ours, theirs = self.float_outputs(fn), self.float_outputs(native)
            torch.testing.assert_close(
                torch.func.jvp(ours, tuple(tensors), moves), torch.func.jvp(theirs, tuple(tensors), moves)
            )
        if self.has_second_order:
            ours, theirs = self.loss(fn), self.loss(native)
            hvp = torch.autograd.functional.hvp(ours, tuple(tensors), moves)[1]
            torch.testing.assert_close(hvp, torch.autograd.functional.hvp(theirs, tuple(tensors), moves)[1])
            argnums = tuple(range(len(tensors)))
            over = [
                torch.func.jvp(torch.func.grad(f, argnums=argnums), tuple(tensors), moves)[1] for f in (ours, theirs)
            ]
            torch.testing.assert_close(*over)

    def test_grad_and_jacrev_match_native(self, device):
        fn, native, tensors = self.of_tensors(self.call, self.samples[0], device)
        argnums = tuple(range(len(tensors)))
        grad = torch.func.grad(self.loss(fn), argnums=argnums)(*tensors)
        torch.testing.assert_close(grad, torch.func.grad(self.loss(native), argnums=argnums)(*tensors))
        jacobian = torch.func.jacrev(self.float_outputs(fn), argnums=argnums)(*tensors)
        torch.testing.assert_close(jacobian, torch.func.jacrev(self.float_outputs(native), argnums=argnums)(*tensors))

    def test_forward_mode_matches_native_or_is_refused(self, device):
        """torch.func.jvp, jacfwd and dual tensors; without a jvp kernel, the op's error."""
        fn, native, tensors = self.of_tensors(self.call, self.samples[0], device)
        fn, native = self.float_outputs(fn), self.float_outputs(native)
        tangents = [torch.randn_like(t) for t in tensors]
        if not self.has_jvp:
            with pytest.raises(RuntimeError, match=self.refusal("jvp")):
                torch.func.jvp(fn, tuple(tensors), tuple(tangents))
            return
        torch.testing.assert_close(
            torch.func.jvp(fn, tuple(tensors), tuple(tangents)), torch.func.jvp(native, tuple(tensors), tuple(tangents))
        )
        argnums = tuple(range(len(tensors)))
        torch.testing.assert_close(
            torch.func.jacfwd(fn, argnums=argnums)(*tensors), torch.func.jacfwd(native, argnums=argnums)(*tensors)
        )
        forward_ad = torch.autograd.forward_ad
        with forward_ad.dual_level():
            duals = [forward_ad.make_dual(t, d) for t, d in zip(tensors, tangents, strict=True)]
            ours, theirs = outputs(fn(*duals)), outputs(native(*duals))
            for a, b in zip(ours, theirs, strict=True):
                torch.testing.assert_close(forward_ad.unpack_dual(a).tangent, forward_ad.unpack_dual(b).tangent)

    def test_forward_mode_over_vmap_matches_native(self, device):
        """jvp and jacfwd of the op vmapped over its batch: torch.func's rule for a Function's saved values."""
        if not self.has_jvp:
            pytest.skip("the op declares no jvp kernel (see test_forward_mode_matches_native_or_is_refused)")
        fn, native, tensors = self.of_tensors(self.call, self.samples[0], device)
        in_dims = self.batch_in_dims(self.samples[0])
        ours, theirs = (torch.func.vmap(self.float_outputs(f), in_dims=in_dims) for f in (fn, native))
        tangents = tuple(torch.randn_like(t) for t in tensors)
        torch.testing.assert_close(
            torch.func.jvp(ours, tuple(tensors), tangents), torch.func.jvp(theirs, tuple(tensors), tangents)
        )
        argnums = tuple(range(len(tensors)))
        jacobians = [torch.func.jacfwd(f, argnums=argnums)(*tensors) for f in (ours, theirs)]
        torch.testing.assert_close(*jacobians)

    def test_second_derivatives_match_native(self, device):
        """Hessians three ways, hvp, and dual tensors through torch.autograd.grad (forward over reverse)."""
        if not self.has_second_order:
            pytest.skip("the op declares no second derivatives (see test_gradgradcheck_or_a_clear_refusal)")
        sample = self.small_sample()
        fn, native, tensors = self.of_tensors(self.call, sample, device)
        ours, theirs = self.loss(fn), self.loss(native)
        for i in range(len(tensors)):
            expected = torch.func.hessian(theirs, argnums=i)(*tensors)
            torch.testing.assert_close(torch.func.hessian(ours, argnums=i)(*tensors), expected)
            rev_rev = torch.func.jacrev(torch.func.jacrev(ours, argnums=i), argnums=i)(*tensors)
            torch.testing.assert_close(rev_rev, expected)
            rev_fwd = torch.func.jacrev(torch.func.jacfwd(ours, argnums=i), argnums=i)(*tensors)
            torch.testing.assert_close(rev_fwd, expected)
        directions = tuple(torch.randn_like(t) for t in tensors)
        hvp = torch.autograd.functional.hvp(ours, tuple(tensors), directions)[1]
        torch.testing.assert_close(hvp, torch.autograd.functional.hvp(theirs, tuple(tensors), directions)[1])
        forward_ad = torch.autograd.forward_ad
        leaves = [t.clone().requires_grad_() for t in tensors]
        with forward_ad.dual_level():
            dual = forward_ad.make_dual(leaves[0], directions[0])
            a = torch.autograd.grad(ours(dual, *leaves[1:]), leaves)
            b = torch.autograd.grad(theirs(dual, *leaves[1:]), leaves)
            for x, y in zip(a, b, strict=True):
                assert forward_ad.unpack_dual(x).tangent is not None
                torch.testing.assert_close(forward_ad.unpack_dual(x).tangent, forward_ad.unpack_dual(y).tangent)

    def test_third_derivatives_match_native_or_are_refused(self, device):
        if not self.has_second_order:
            pytest.skip("the op declares no second derivatives")
        fn, native, tensors = self.of_tensors(self.call, self.samples[0], device, requires_grad=True)

        def third(f):
            grads = torch.autograd.grad(self.loss(f)(*tensors), tensors, create_graph=True)
            seconds = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), tensors, create_graph=True)
            return torch.autograd.grad(sum(s.pow(2).sum() for s in seconds), tensors, materialize_grads=True)

        if self.declared.third_derivatives_are_zero:
            torch.testing.assert_close(third(fn), third(native))
        else:
            with pytest.raises(RuntimeError, match=f"{self.name}: third derivatives are not supported"):
                third(fn)

    # ------------------------------------------------------------------
    # vmap and torch.func
    # ------------------------------------------------------------------

    def test_vmap_matches_a_loop(self, vmapped, device):
        """vmap over one tensor input (or all) equals a Python loop over its samples, of the op and of native."""
        draws = [self.args(self.samples[0], device=device, requires_grad=False) for _ in range(3)]
        args, names = draws[0], [a.name for a in self.declared.arguments]
        positions = [i for i in self.tensor_positions(args) if vmapped in ("all", names[i])]
        batches = [torch.stack([d[i] for d in draws]) if i in positions else None for i in range(len(args))]
        in_dims = tuple(0 if i in positions else None for i in range(len(args)))
        full = [b if b is not None else a for a, b in zip(args, batches, strict=True)]
        batched = outputs(torch.func.vmap(self.call, in_dims=in_dims)(*full))

        def loop(fn):
            per_sample = [
                outputs(fn(*[a if b is None else b[k] for a, b in zip(args, batches, strict=True)])) for k in range(3)
            ]
            return tuple(torch.stack(o) for o in zip(*per_sample, strict=True))

        torch.testing.assert_close(batched, loop(self.call))
        torch.testing.assert_close(batched, loop(self.call_native))

    def test_per_sample_gradients_match_native(self, device):
        """Gradients of every tensor input, vmapped over the batch dim: per-sample gradients of the others."""
        fn, native, tensors = self.of_tensors(self.call, self.samples[0], device)
        argnums = tuple(range(len(tensors)))
        in_dims = self.batch_in_dims(self.samples[0])
        ours = torch.func.vmap(torch.func.grad(self.loss(fn), argnums=argnums), in_dims=in_dims)(*tensors)
        theirs = torch.func.vmap(torch.func.grad(self.loss(native), argnums=argnums), in_dims=in_dims)(*tensors)
        torch.testing.assert_close(ours, theirs)

    # ------------------------------------------------------------------
    # torch.ops, opcheck, compile, export
    # ------------------------------------------------------------------

    def test_torch_ops_has_the_public_signature_and_defaults(self, device):
        """torch.ops.<package>.<op>: the public function's names and defaults; arguments left out take them."""
        import inspect

        arguments = self.declared.op._schema.arguments
        parameters = inspect.signature(type(self).op).parameters
        assert [a.name for a in arguments] == list(parameters)
        defaults = [a.default_value if a.has_default_value() else inspect.Parameter.empty for a in arguments]
        assert [list(d) if isinstance(d, tuple) else d for d in defaults] == [
            list(p.default) if isinstance(p.default, tuple) else p.default for p in parameters.values()
        ]
        # The dispatcher leaves out trailing arguments equal to their defaults, given or not.
        required = [a.name for a in self.declared.arguments if not a.has_default]
        args = self.args({n: self.samples[0][n] for n in required}, device=device)
        given = args[len(required) :]
        compiled = torch.compile(lambda *a: self.declared.op(*a), fullgraph=True)
        for op in (self.declared.op, compiled):
            assert_matches(lambda *a, op=op: op(*a[: len(required)]), self.call, *args)
            assert_matches(lambda *a, op=op: op(*a[: len(required)], *given), self.call, *args)

    def test_torch_ops_under_vmap_and_dual_tensors_and_refusing_torch_func_derivatives(self, device):
        """torch.ops.<package>.<op>: vmap runs it once per sample, dual tensors get native's tangents (where the op
        has a jvp kernel), and torch.func's derivative transforms get an error that names the public function,
        never the zero tangents of a custom op's own autograd."""
        fn, native, tensors = self.of_tensors(self.declared.op, self.samples[0], device)
        in_dims = self.batch_in_dims(self.samples[0])
        torch.testing.assert_close(
            torch.func.vmap(fn, in_dims=in_dims)(*tensors), torch.func.vmap(native, in_dims=in_dims)(*tensors)
        )
        if self.has_jvp:
            forward_ad = torch.autograd.forward_ad
            with forward_ad.dual_level():
                duals = [forward_ad.make_dual(t, torch.randn_like(t)) for t in tensors]
                for a, b in zip(
                    outputs(self.float_outputs(fn)(*duals)), outputs(self.float_outputs(native)(*duals)), strict=True
                ):
                    torch.testing.assert_close(forward_ad.unpack_dual(a).tangent, forward_ad.unpack_dual(b).tangent)
        message = (
            rf"does not run under torch.func transforms .* call {re.escape(self.declared.qualname.replace('::', '.'))}"
        )
        for transform in (torch.func.grad, torch.func.jacrev, torch.func.jacfwd):
            with pytest.raises(RuntimeError, match=message):
                transform(self.loss(fn))(*tensors)

    @pytest.mark.parametrize("requires_grad", [False, True])
    @pytest.mark.parametrize("dtype", FLOAT_DTYPES)
    def test_opcheck(self, dtype, requires_grad, device):
        """The op and its forward kernel op, whose fake must give the kernel's shapes and dtypes, in every dtype."""
        if dtype in (torch.float16, torch.bfloat16) and not self.half_precision:
            pytest.skip("the op does not take half precision")
        args = self.args(self.samples[0], dtype, device, requires_grad=requires_grad)
        torch.library.opcheck(self.declared.op, tuple(args))
        torch.library.opcheck(
            self.declared.kernel_ops["forward"].op,
            tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
        )

    def test_opcheck_derivative_kernel_ops(self, device):
        """Each derivative kernel op on plain tensors: (leading tensors, state, targets), as its Function calls it."""
        d = self.declared
        args = [
            a.detach() if isinstance(a, torch.Tensor) else a for a in self.args(self.samples[0], torch.float32, device)
        ]
        results = d.kernel_ops["forward"](*args)
        results = results if isinstance(results, (tuple, list)) else (results,)
        tensors = [args[i] for i in d.tensor_positions]
        kept = [results[i] for i in d.kept_outputs]
        state = [*tensors, *kept, *results[len(d.outputs) :], *(args[i] for i in d.plain_positions)]
        grads = [torch.randn_like(o) if o.dtype.is_floating_point else None for o in results[: len(d.outputs)]]
        fixed = [name in d.nondifferentiable for name in d.tensors]  # no derivative is asked in these
        moves = [None if t is None or f else torch.randn_like(t) for t, f in zip(tensors, fixed, strict=True)]
        input_targets = [None if t is None or f else list(t.shape) for t, f in zip(tensors, fixed, strict=True)]
        output_targets = [list(o.shape) if o.dtype.is_floating_point else None for o in results[: len(d.outputs)]]
        calls = {
            "backward": (*grads, *state, *input_targets),
            "jvp": (*moves, *state, *output_targets),
            "curvature": (*grads, *moves, *state, *input_targets),
        }
        for role in d.roles:
            torch.library.opcheck(d.kernel_ops[role].op, calls[role])

    @pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
    def test_compile_fullgraph(self, dynamic, device):
        """Values and gradients of compiled code around the op, with static and dynamic shapes."""
        compiled = torch.compile(
            lambda *a: tuple(o * 2 for o in outputs(self.call(*a))), fullgraph=True, dynamic=dynamic
        )
        for sample in self.samples[:2]:
            args = self.args(sample, device=device)
            assert_matches(compiled, lambda *a: tuple(o * 2 for o in outputs(self.call_native(*a))), *args)

    def test_compiled_torch_func_matches_native(self, device):
        """torch.func inside torch.compile: vmap gives native's values; grad, jvp and jacfwd native's values or
        a clear error, never zeros."""
        fn, native, tensors = self.of_tensors(self.call, self.samples[0], device)
        assert_values_or_refusal(  # torch 2.13 and 2.14 cannot trace it: the op says so
            lambda: torch.compile(torch.func.grad(self.loss(fn)), fullgraph=True)(*tensors),
            lambda: torch.func.grad(self.loss(native))(*tensors),
            f"{self.name}_forward got tensors that a torch.func transform differentiates",
        )
        in_dims = self.batch_in_dims(self.samples[0])
        batched = torch.compile(torch.func.vmap(fn, in_dims=in_dims), fullgraph=True)(*tensors)
        torch.testing.assert_close(batched, torch.func.vmap(native, in_dims=in_dims)(*tensors))
        refusal = rf"{self.name}_forward got a forward-mode tangent .* outside torch.compile|{self.refusal('jvp')}"
        first, rest = tensors[0], tensors[1:]
        assert_compiled_forward_mode_matches_native(
            lambda x: self.float_outputs(fn)(x, *rest), lambda x: self.float_outputs(native)(x, *rest), first, refusal
        )

    @pytest.mark.parametrize("dim", ["auto", "range"])
    def test_export_with_a_dynamic_batch_runs_at_every_batch(self, dim):
        """A new leading dim on the batch argument, exported dynamic (Dim.AUTO, or a Dim from 1 to 64): no check
        may pin it. The program runs at batch 1, 2, 64 and at the size of every dim of the other tensors."""
        sample = dict(self.samples[0])
        batch = self.batch_argument(sample)
        shapes = self._shapes(sample)

        def inputs(size):
            return self.args(self.with_batch(sample, size), requires_grad=False)

        args = inputs(2)
        positions = self.tensor_positions(args)
        op = self.call

        class Wrapped(torch.nn.Module):
            def forward(self, *tensors):
                full = list(args)
                for i, t in zip(positions, tensors, strict=True):
                    full[i] = t
                return op(*full)

        names = [self.declared.arguments[i].name for i in positions]
        dynamic = tuple({0: _batch_dim(dim)} if name == batch else None for name in names)
        program = torch.export.export(Wrapped(), tuple(args[i] for i in positions), dynamic_shapes=(dynamic,)).module()
        sizes = {1, 2, 64} | {n for name, shape in shapes.items() if name != batch for n in shape if n >= 1}
        for size in sorted(sizes):
            full = inputs(size)
            ours = outputs(program(*(full[i] for i in positions)))
            torch.testing.assert_close(ours, outputs(self.call_native(*full)))

    def test_export_saves_loads_and_backpropagates_as_native(self, device):
        args = self.args(self.samples[0], device=device)
        fn, tensors = self.over_tensors(self.call, args)

        class Wrapped(torch.nn.Module):
            def forward(self, *tensors):
                return fn(*tensors)

        exported = torch.export.export(Wrapped(), tuple(t.detach() for t in tensors))
        buffer = io.BytesIO()
        torch.export.save(exported, buffer)
        buffer.seek(0)
        native, _ = self.over_tensors(self.call_native, args)
        for program in (exported, torch.export.load(buffer)):
            module = program.module()
            assert_matches(lambda *t, module=module: outputs(module(*t)), lambda *t: outputs(native(*t)), *tensors)

    # ------------------------------------------------------------------
    # Bad input
    # ------------------------------------------------------------------

    def test_bad_input(self, bad):
        sample, error, message = bad
        with pytest.raises(error, match=f"^{self.name}: {message}"):
            self.call(*self.args(sample, torch.float32, requires_grad=False))

    def test_every_path_refuses_bad_input_alike(self, bad_tensors):
        """torch.ops, eager and compiled, refuses tensors as the public function does: the same declared op.

        Compiled, the error comes in the exceptions torch.compile raises for them (see `compiled_refusals`).
        (An argument of another type than the schema's meets the dispatcher's own checks first.)
        """
        sample, error, message = bad_tensors
        args = self.args(sample, torch.float32, requires_grad=False)
        with pytest.raises(error, match=f"^{self.name}: {message}"):
            self.declared.op(*args)
        with pytest.raises(compiled_refusals(), match=f"{self.name}: {message}"):
            torch.compile(self.declared.op, fullgraph=True, dynamic=False)(*args)

    def _well_typed(self, sample) -> bool:
        """Whether each argument of `sample` has its schema type and each tensor is dense: what the dispatcher takes."""
        for a, take in zip(self.declared.arguments, self.declared._takers, strict=True):
            value = sample.get(a.name, a.default)
            if a.is_tensor:
                if callable(value):  # torch.compile refuses sparse tensors itself
                    value = value(torch.float32, "cpu")
                if not (value is None or isinstance(value, tuple) or getattr(value, "layout", None) == torch.strided):
                    return False
            else:
                try:
                    take(self.name, a.name, value)
                except (TypeError, ValueError):
                    return False
        return True

    # ------------------------------------------------------------------
    # The module, and training
    # ------------------------------------------------------------------

    def _module(self):
        if type(self).module is None:
            pytest.skip("the op declares no module")
        return type(self).module()

    def _model(self):
        """The module behind a Linear (and `module_input_domain`), the Linear's input shape, and native."""
        module, shape, native = self._module()
        layers = [torch.nn.Linear(shape[-1], shape[-1])]
        if type(self).module_input_domain is not None:
            layers.append(_Map(type(self).module_input_domain))
        return torch.nn.Sequential(*layers, module), shape, native

    @pytest.mark.parametrize("sharding", SHARDINGS)
    def test_module_trains_under_ddp_and_fsdp_as_native(self, sharding):
        """FSDP frees each parameter's storage after the forward (resize_(0)): the op must leave it resizable."""
        model, shape, native = self._model()
        with one_process_group():
            assert_trains_like_native(model, native, torch.randn(shape), sharding)

    @pytest.mark.parametrize("mode", [None, *(["reduce-overhead"] if HAS_CUDA else [])])
    def test_module_compiles_fullgraph(self, mode, device):
        """Also with CUDA graphs ("reduce-overhead"), which leave out the op: it is tagged cudagraph_unsafe."""
        model, shape, _ = self._model()
        model = model.to(device)
        x = torch.randn(shape, device=device)
        compiled = torch.compile(model, fullgraph=True, mode=mode)
        expected = model(x)
        torch.testing.assert_close(compiled(x), expected)
        parameters = list(model.parameters())
        torch.testing.assert_close(
            torch.autograd.grad(mean_square(compiled(x)), parameters),
            torch.autograd.grad(mean_square(expected), parameters),
        )

    def test_module_exports_and_backpropagates_as_in_eager(self):
        model, shape, _ = self._model()
        x = torch.randn(shape, requires_grad=True)
        exported = torch.export.export(model, (x.detach(),)).module()
        torch.testing.assert_close(exported(x), model(x))
        ours = torch.autograd.grad(mean_square(exported(x)), (x, *exported.parameters()))
        torch.testing.assert_close(ours, torch.autograd.grad(mean_square(model(x)), (x, *model.parameters())))

    @pytest.mark.parametrize("dim", ["auto", "range"])
    def test_module_exports_with_a_dynamic_batch_and_runs_at_every_batch(self, dim):
        """At batch 1, 2, 64 and at the size of every dim of every parameter: no check may pin the batch."""
        model, shape, _ = self._model()
        x = torch.randn(2, *shape)
        program = torch.export.export(model, (x,), dynamic_shapes=({0: _batch_dim(dim)},)).module()
        sizes = {1, 2, 64} | {n for p in model.parameters() for n in p.shape}
        for size in sorted(sizes):
            x = torch.randn(size, *shape)
            torch.testing.assert_close(program(x), model(x))

    def test_module_traces_and_defers_to_tensor_likes(self):
        model, shape, _ = self._model()
        assert_seen_as_a_torch_function(model, type(self).op, torch.randn(shape))

    def test_module_made_on_the_meta_device_initialises_as_one_made_normally(self):
        """Deferred initialisation, as FSDP and large models use it: to_empty, then reset_parameters, under one seed,
        of each module with parameters or buffers of its own (FSDP's rule)."""
        with torch.device("meta"):
            deferred = self._module()[0]
        deferred.to_empty(device="cpu")
        torch.manual_seed(0)
        for module in deferred.modules():
            own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
            if own and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        torch.manual_seed(0)
        normal = self._module()[0]
        assert [n for n, _ in deferred.named_parameters()] == [n for n, _ in normal.named_parameters()]
        torch.testing.assert_close(dict(deferred.state_dict()), dict(normal.state_dict()), rtol=0, atol=0)

    def test_module_on_the_meta_device(self):
        module, shape, native = self._module()
        module = module.to("meta")
        x = torch.empty(shape, device="meta", requires_grad=True)
        y = module(x)
        assert [(o.device.type, o.shape) for o in outputs(y)] == [("meta", o.shape) for o in outputs(native(module, x))]
        parameters = [x, *module.parameters()]
        grads = torch.autograd.grad(mean_square(y), parameters)
        assert [(g.device.type, g.shape) for g in grads] == [("meta", p.shape) for p in parameters]

    # ------------------------------------------------------------------
    # CUDA, and the benchmark
    # ------------------------------------------------------------------

    if HAS_CUDA:  # no test of a device this machine lacks

        def test_cuda_round_trip_matches_native(self):
            with round_trip():
                assert_matches(self.call, self.call_native, *self.args(self.samples[0], device="cuda"))

        @needs_cupy
        def test_cuda_tensors_never_leave_the_gpu(self):
            """Without the strict checks, whose comparison of each input before and after reads it back."""
            args = self.args(self.samples[0], torch.float32, "cuda")

            def step():
                self.loss(self.call)(*args).backward()

            with strict_checks(False):
                assert_stays_on_gpu(step)

    def test_benchmark_runs(self, monkeypatch, capsys):
        """python -m benchmarks.bench_<op> --tiny: the op's benchmark script, on its first sample, once."""
        script = f"benchmarks.bench_{self.name}"
        try:
            found = importlib.util.find_spec(script) is not None
        except ModuleNotFoundError:  # no benchmarks package
            found = False
        if not found:
            pytest.skip(f"no {script.replace('.', '/')}.py, the template's benchmark script, to run")
        monkeypatch.setattr(sys, "argv", [f"bench_{self.name}", "--tiny", "--device", "cpu"])
        runpy.run_module(script, run_name="__main__")
        assert f"## {type(self).op.__name__}, forward + backward" in capsys.readouterr().out


# help(OpContract) shows what each attribute is: the module's description.
OpContract.__doc__ = f"{OpContract.__doc__}\n\n{__doc__}"
