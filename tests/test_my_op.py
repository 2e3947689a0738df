"""my_op: values and derivatives against native torch, and every way a PyTorch user calls it.

The file has two parts.
- The contract: what every op keeps, whatever its math. When you replace the kernels,
  replace `native` (a torch version of your op, or a slow but obviously correct one) and
  `inputs`, and keep these tests.
- This op's design, at the bottom: checks of choices this op made (elementwise on any
  shape, a weight that broadcasts, a float hyperparameter). Change or delete each one
  where your op differs; each says when.
"""

import inspect

import numpy as np
import pytest
import torch
from conftest import (
    SHARDINGS,
    assert_compiled_forward_mode_matches_native,
    assert_matches,
    assert_seen_as_a_torch_function,
    assert_stays_on_gpu,
    assert_trains_like_native,
    compiled_refusals,
    needs_cuda,
    needs_cupy,
    randn,
    round_trip,
    tolerances,
)

from reference import MyOp, my_op


def native(x, weight, frequency=1.0):
    return weight * torch.sin(frequency * x)


def inputs(x_shape, weight_shape, dtype=torch.float64, device="cpu"):
    """x, a learnable weight and the hyperparameter, as my_op takes them."""
    return randn(*x_shape, dtype=dtype, device=device), randn(*weight_shape, dtype=dtype, device=device), 0.7


# (x's shape, weight's shape): the weight broadcasts over x's batch.
CASES = [((8, 8), (8,)), ((7, 9), (1,)), ((3, 4, 6), ()), ((2, 3, 5, 4), (5, 4)), ((5, 1), (5, 1))]

# ----------------------------------------------------------------------------
# The contract: every op keeps these.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("x_shape", "weight_shape"), CASES)
def test_values_and_gradients_match_native(x_shape, weight_shape, dtype, device):
    assert_matches(my_op, native, *inputs(x_shape, weight_shape, dtype, device), **tolerances(dtype))


def test_keeps_dtype(device):
    for dtype in (torch.float32, torch.float64):
        x, weight, frequency = inputs((2, 7, 9), (9,), dtype, device)
        y = my_op(x, weight, frequency)
        assert (y.dtype, y.shape, y.device.type) == (dtype, x.shape, device)
        y.sum().backward()
        assert x.grad.dtype == weight.grad.dtype == dtype


@pytest.mark.parametrize("view", ["transpose", "step", "expand"])
def test_non_contiguous_input(view, device):
    base = randn(4, 10, 12, device=device)
    x = {"transpose": base.transpose(-1, -2), "step": base[:, ::2, 1::3], "expand": base[:1].expand(3, -1, -1)}[view]
    assert not x.is_contiguous()
    weight = randn(12, 2, device=device)[:, 0][: x.shape[-1]]
    assert_matches(my_op, native, x, weight, 0.7)


@pytest.mark.parametrize(("x_shape", "weight_shape"), [((6, 8), (8,)), ((2, 3, 4), ())])
def test_gradcheck_and_gradgradcheck(x_shape, weight_shape, device):
    x, weight, frequency = inputs(x_shape, weight_shape, device=device)

    def op(x, weight):
        return my_op(x, weight, frequency)

    assert torch.autograd.gradcheck(op, (x, weight), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(op, (x, weight), check_fwd_over_rev=True, check_rev_over_rev=True)


def test_forward_mode_matches_native(device):
    x, weight, frequency = (t.detach() if isinstance(t, torch.Tensor) else t for t in inputs((2, 5, 6), (6,)))
    x, weight = x.to(device), weight.to(device)
    tangents = (torch.randn_like(x), torch.randn_like(weight))

    def ours(x, weight):
        return my_op(x, weight, frequency)

    def theirs(x, weight):
        return native(x, weight, frequency)

    torch.testing.assert_close(
        torch.func.jvp(ours, (x, weight), tangents), torch.func.jvp(theirs, (x, weight), tangents)
    )
    jacobians = torch.func.jacfwd(ours, argnums=(0, 1))(x[0], weight)
    torch.testing.assert_close(jacobians, torch.func.jacfwd(theirs, argnums=(0, 1))(x[0], weight))
    forward_ad = torch.autograd.forward_ad
    with forward_ad.dual_level():
        duals = forward_ad.make_dual(x, tangents[0]), forward_ad.make_dual(weight, tangents[1])
        torch.testing.assert_close(
            forward_ad.unpack_dual(ours(*duals)).tangent, forward_ad.unpack_dual(theirs(*duals)).tangent
        )


@pytest.mark.parametrize("argnum", [0, 1], ids=["x", "weight"])
def test_second_derivatives_match_native(argnum, device):
    """Hessians forward over reverse, reverse over reverse and reverse over forward."""
    x, weight = (
        torch.randn(4, 5, dtype=torch.float64, device=device),
        torch.randn(5, dtype=torch.float64, device=device),
    )

    def loss(fn):
        return lambda x, weight: fn(x, weight, 0.7).pow(2).sum()

    expected = torch.func.hessian(loss(native), argnums=argnum)(x, weight)
    torch.testing.assert_close(torch.func.hessian(loss(my_op), argnums=argnum)(x, weight), expected)
    rev_rev = torch.func.jacrev(torch.func.jacrev(loss(my_op), argnums=argnum), argnums=argnum)(x, weight)
    torch.testing.assert_close(rev_rev, expected)
    rev_fwd = torch.func.jacrev(torch.func.jacfwd(loss(my_op), argnums=argnum), argnums=argnum)(x, weight)
    torch.testing.assert_close(rev_fwd, expected)


def test_forward_over_reverse_and_hvp_match_native(device):
    """Dual tensors through torch.autograd.grad, and torch.autograd.functional.hvp: the Hessian-vector product."""
    x, weight, frequency = inputs((4, 6), (6,), device=device)
    directions = (torch.randn_like(x), torch.randn_like(weight))

    def loss(fn):
        return lambda x, weight: fn(x, weight, frequency).pow(2).sum()

    ours = torch.autograd.functional.hvp(loss(my_op), (x, weight), directions)[1]
    torch.testing.assert_close(ours, torch.autograd.functional.hvp(loss(native), (x, weight), directions)[1])
    forward_ad = torch.autograd.forward_ad
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, directions[0])
        ours = torch.autograd.grad(loss(my_op)(dual, weight), (x, weight))
        theirs = torch.autograd.grad(loss(native)(dual, weight), (x, weight))
        for a, b in zip(ours, theirs, strict=True):
            assert forward_ad.unpack_dual(a).tangent is not None
            torch.testing.assert_close(forward_ad.unpack_dual(a).tangent, forward_ad.unpack_dual(b).tangent)
        # A backward over tangents: second derivatives. Within the dual level, torch would also take
        # their tangents, which are third derivatives; after it, they are native's.
        tangent = forward_ad.unpack_dual(my_op(dual, weight, frequency)).tangent.sum()
        expected = forward_ad.unpack_dual(native(dual, weight, frequency)).tangent.sum()
        with pytest.raises(RuntimeError, match="my_op: third derivatives are not supported"):
            torch.autograd.grad(tangent, x, retain_graph=True)
    torch.testing.assert_close(torch.autograd.grad(tangent, x), torch.autograd.grad(expected, x))


def test_saves_what_the_backward_uses_as_native_does():
    """The backward uses the phase, not x: an inference-mode x, or one changed in place after the forward, is fine."""
    weight = torch.randn(6, dtype=torch.float64, requires_grad=True)
    with torch.inference_mode():
        x = torch.randn(4, 6, dtype=torch.float64)
    (ours,) = torch.autograd.grad(my_op(x, weight, 0.7).sum(), weight)
    (theirs,) = torch.autograd.grad(native(x, weight, 0.7).sum(), weight)
    torch.testing.assert_close(ours, theirs)
    x = torch.randn(4, 6, dtype=torch.float64)
    expected = torch.autograd.grad(native(x, weight, 0.7).sum(), weight)
    y = my_op(x, weight, 0.7)
    x.add_(1.0)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), weight), expected)


def test_check_sees_inputs_after_autocast():
    """Under autocast, inputs of mixed float dtypes are taken, as native ops under autocast take them."""
    x, weight = torch.randn(4, 6, dtype=torch.bfloat16), torch.randn(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = my_op(x, weight, 0.7)
        y_ops = torch.ops.reference.my_op(x, weight, 0.7)
    torch.testing.assert_close(y, native(x.float(), weight, 0.7))
    torch.testing.assert_close(y_ops, y)
    with pytest.raises(TypeError, match=r"^my_op: weight must have the x's dtype"):
        my_op(x, weight, 0.7)


def test_exported_program_backpropagates_as_native():
    model = MyOp(6, frequency=0.5).double()
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    exported = torch.export.export(model, (x.detach(),)).module()
    (ours,) = torch.autograd.grad(exported(x).pow(2).sum(), x)
    (theirs,) = torch.autograd.grad(model(x).pow(2).sum(), x)
    torch.testing.assert_close(ours, theirs)


def test_torch_ops_has_the_public_signature():
    """Names and defaults, as the public function has them."""
    arguments = torch.ops.reference.my_op.default._schema.arguments
    parameters = inspect.signature(my_op).parameters
    assert [a.name for a in arguments] == list(parameters)
    assert [a.default_value if a.has_default_value() else inspect.Parameter.empty for a in arguments] == [
        p.default for p in parameters.values()
    ]


def test_third_derivatives_raise_a_clear_error(device):
    x, weight, frequency = inputs((4, 6), (6,), device=device)
    (grad,) = torch.autograd.grad(my_op(x, weight, frequency).pow(2).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="my_op: third derivatives are not supported"):
        second.sum().backward()


def test_output_owns_its_memory(device):
    x, weight, frequency = inputs((4, 6), (6,), device=device)
    y = my_op(x, weight, frequency)
    grads = torch.autograd.grad(y.sum(), (x, weight))
    assert len({t.untyped_storage().data_ptr() for t in (x, weight, y, *grads)}) == 5


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad, device):
    x, weight = torch.randn(3, 5, 6, device=device), torch.randn(6, device=device)
    torch.library.opcheck(torch.ops.reference.my_op_forward, (x, weight, 0.7))
    x.requires_grad_(requires_grad), weight.requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.reference.my_op, (x, weight, 0.7))


def test_opcheck_derivative_ops(device):
    """The derivative ops are checked on plain tensors; their Functions differentiate them.

    Each takes the leading tensors, the state (x, weight, the saved phase, frequency) and the
    shapes of the derivatives it gives.
    """
    x, grad, x_direction = (torch.randn(3, 5, 6, device=device) for _ in range(3))
    weight, weight_direction = torch.randn(6, device=device), torch.randn(6, device=device)
    state = (x, weight, 0.7 * x, 0.7)
    torch.library.opcheck(torch.ops.reference.my_op_backward, (grad, *state, [3, 5, 6], [6]))
    torch.library.opcheck(torch.ops.reference.my_op_backward, (grad, *state, None, [6]))
    torch.library.opcheck(torch.ops.reference.my_op_jvp, (x_direction, weight_direction, *state, [3, 5, 6]))
    curvature = (grad, x_direction, weight_direction, *state, [3, 5, 6], [6])
    torch.library.opcheck(torch.ops.reference.my_op_curvature, curvature)


def test_torch_ops_path_matches_the_function(device):
    """torch.ops.reference.my_op: values and derivatives, reverse and forward, eager and compiled."""
    op = torch.ops.reference.my_op
    assert_matches(op, native, *inputs((5, 6), (6,), device=device))
    compiled = torch.compile(lambda x, w, f: op(x, w, f) * 2, fullgraph=True)
    assert_matches(compiled, lambda x, w, f: native(x, w, f) * 2, *inputs((5, 6), (6,), device=device))
    x, weight = (
        torch.randn(5, 6, dtype=torch.float64, device=device),
        torch.randn(6, dtype=torch.float64, device=device),
    )
    forward_ad = torch.autograd.forward_ad
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, torch.randn_like(x))
        ours, theirs = op(dual, weight, 0.7), native(dual, weight, 0.7)
        torch.testing.assert_close(forward_ad.unpack_dual(ours).tangent, forward_ad.unpack_dual(theirs).tangent)


@pytest.mark.parametrize("frequency", [(), (1.0,), (0.5,)], ids=["left out", "the default", "another"])
def test_torch_ops_path_takes_the_schema_default(frequency, device):
    """The dispatcher leaves out a trailing argument equal to its default; the op still gets it."""
    x, weight, _ = inputs((5, 6), (6,), device=device)

    def ours(x, weight):
        return torch.ops.reference.my_op(x, weight, *frequency)

    def theirs(x, weight):
        return native(x, weight, *frequency)

    assert_matches(ours, theirs, x, weight)
    assert_matches(torch.compile(ours, fullgraph=True), theirs, x, weight)


@pytest.mark.parametrize("transform", [torch.func.grad, torch.func.jacrev, torch.func.jacfwd])
def test_torch_ops_path_refuses_torch_func_derivatives(transform, device):
    """Never the zero tangents of a custom op's autograd: a clear error that names the public function.

    vmap alone works: torch runs the op once per sample.
    """
    x, weight = torch.randn(3, 5, 6, dtype=torch.float64, device=device), torch.randn(6, dtype=torch.float64)
    weight = weight.to(device)
    batched = torch.func.vmap(torch.ops.reference.my_op, in_dims=(0, None, None))(x, weight, 0.7)
    torch.testing.assert_close(batched, native(x, weight, 0.7))
    with pytest.raises(RuntimeError, match=r"does not run under torch.func transforms .* call reference.my_op"):
        transform(lambda x: torch.ops.reference.my_op(x, weight, 0.7).sum())(x)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compile_fullgraph(mode, device):
    """Also with CUDA graphs ("reduce-overhead"), which leave out the op: it is tagged cudagraph_unsafe."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), MyOp(8)).to(device)
    compiled = torch.compile(model, fullgraph=True, mode=mode)
    x = torch.randn(2, 6, 8, device=device)
    expected = model(x)
    torch.testing.assert_close(compiled(x), expected)
    grads = torch.autograd.grad(compiled(x).sum(), list(model.parameters()))
    torch.testing.assert_close(grads, torch.autograd.grad(expected.sum(), list(model.parameters())))


def test_export(device):
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), MyOp(8, frequency=0.5)).to(device)
    x = torch.randn(2, 6, 8, device=device)
    torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), model(x))


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_trains_under_ddp_and_fsdp_as_native(sharding, process_group):
    """FSDP frees each parameter's storage after the forward (resize_(0)): the op must leave it resizable."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), MyOp(8, frequency=0.9))
    assert_trains_like_native(
        model, lambda module, x: native(x, module.weight, module.frequency), torch.randn(4, 8), sharding
    )


def test_vmap_over_either_input(device):
    x, weights = torch.randn(4, 3, 6, dtype=torch.float64, device=device), torch.randn(5, 6, dtype=torch.float64)
    weights = weights.to(device)
    by_x = torch.func.vmap(my_op, in_dims=(1, None, None))(x.movedim(0, 1), weights[0], 0.7)
    torch.testing.assert_close(by_x, native(x, weights[0], 0.7))
    by_weight = torch.func.vmap(my_op, in_dims=(None, 0, None))(x, weights, 0.7)
    torch.testing.assert_close(by_weight, torch.stack([native(x, w, 0.7) for w in weights]))
    both = torch.func.vmap(my_op, in_dims=(0, 0, None))(x, weights[:4], 0.7)
    torch.testing.assert_close(both, torch.stack([native(a, w, 0.7) for a, w in zip(x, weights, strict=False)]))


def test_func_grad_jacrev_and_per_sample_gradients(device):
    """Per-sample gradients of an unbatched weight: vmap over the batch of grad with respect to the weight."""
    x, weight = torch.randn(4, 7, 6, dtype=torch.float64, device=device), torch.randn(6, dtype=torch.float64)
    weight = weight.to(device)

    def loss(fn, weight, x):
        return fn(x, weight, 0.7).pow(2).sum()

    torch.testing.assert_close(
        torch.func.grad(loss, argnums=(1, 2))(my_op, weight, x),
        torch.func.grad(loss, argnums=(1, 2))(native, weight, x),
    )
    torch.testing.assert_close(
        torch.func.jacrev(my_op, argnums=(0, 1))(x[0], weight, 0.7),
        torch.func.jacrev(native, argnums=(0, 1))(x[0], weight, 0.7),
    )
    per_sample = torch.func.vmap(torch.func.grad(loss, argnums=1), in_dims=(None, None, 0))
    torch.testing.assert_close(per_sample(my_op, weight, x), per_sample(native, weight, x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype, device):
    x, weight = (torch.randn(*shape, device=device).to(dtype).requires_grad_() for shape in ((3, 8, 6), (6,)))

    def in_float32(x, weight, frequency):
        return native(x.float(), weight.float(), frequency).to(dtype)

    assert_matches(my_op, in_float32, x, weight, 0.7)


def test_autocast_runs_in_float32(device):
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), MyOp(6)).to(device)
    x = torch.randn(4, 5, 6, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, native(model[0](x), model[1].weight), rtol=2e-2, atol=5e-2)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


def test_empty_batch(device):
    assert_matches(my_op, native, *inputs((3, 0, 8, 6), (6,), device=device))
    x, weight = torch.randn(0, 5, 6, device=device, requires_grad=True), torch.randn(6, device=device)
    torch.library.opcheck(torch.ops.reference.my_op, (x, weight, 0.7))


OP_BAD_INPUT = [
    ((torch.ones(3, 4, dtype=torch.int64), torch.ones(4)), TypeError, "x must be float16, bfloat16, float32 or"),
    ((torch.ones(3, 4, dtype=torch.complex64), torch.ones(4)), TypeError, "x must be .* got torch.complex64"),
    ((torch.ones(3, 4), torch.ones(4, dtype=torch.float64)), TypeError, "weight must have the x's dtype torch.float32"),
    ((torch.ones(3, 4), torch.ones(5)), ValueError, r"weight must broadcast with x's shape \(3, 4\), got shape \(5,\)"),
]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        *OP_BAD_INPUT,
        (([[1.0]], torch.ones(1)), TypeError, "x must be a torch.Tensor, got list"),
        ((torch.ones(3), 2.0), TypeError, "weight must be a torch.Tensor, got float"),
        ((torch.ones(3), torch.ones(3), "fast"), TypeError, "frequency must be a real number, got str"),
        ((torch.ones(3), torch.ones(3), 10**400), ValueError, "frequency is too large for a float"),
        ((torch.eye(3).to_sparse(), torch.ones(3)), TypeError, "x must be a dense \\(strided\\) tensor, got"),
    ],
)
def test_bad_input(args, error, message):
    with pytest.raises(error, match=f"^my_op: {message}"):
        my_op(*args)


@pytest.mark.parametrize(("args", "error", "message"), OP_BAD_INPUT)
def test_every_path_refuses_bad_input_alike(args, error, message):
    """torch.ops, eager and compiled, checks what the public function checks: the same declared op.

    Compiled, the error comes in the exceptions torch.compile raises for them (see `compiled_refusals`).
    """
    with pytest.raises(error, match=f"^my_op: {message}"):
        torch.ops.reference.my_op(*args, 0.7)
    with pytest.raises(compiled_refusals(), match=f"my_op: {message}"):
        torch.compile(torch.ops.reference.my_op, fullgraph=True, dynamic=False)(*args, 0.7)


@pytest.mark.parametrize("frequency", [np.float32(0.5), np.float64(0.5), np.int64(2), 2])
def test_takes_any_real_number_as_torch_does(frequency):
    x, weight = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(my_op(x, weight, frequency), native(x, weight, float(frequency)))
    assert MyOp(4, frequency).frequency == float(frequency)


def test_traces_scripts_and_defers_to_tensor_likes_as_torch_functions_do():
    assert_seen_as_a_torch_function(torch.nn.Sequential(torch.nn.Linear(4, 4), MyOp(4)), my_op, torch.randn(3, 4))


def test_compiled_forward_mode_gives_native_values_or_a_clear_error(device):
    x, weight = torch.randn(3, 4, dtype=torch.float64, device=device), torch.randn(4, dtype=torch.float64)
    weight = weight.to(device)
    assert_compiled_forward_mode_matches_native(
        lambda x: my_op(x, weight, 0.7),
        lambda x: native(x, weight, 0.7),
        x,
        r"my_op_forward got a forward-mode tangent .* outside torch.compile",
    )


def test_meta_device_gives_shapes_without_computing():
    module = MyOp(6, device="meta")
    x = torch.empty(2, 5, 6, device="meta", requires_grad=True)
    y = module(x)
    assert (y.device.type, y.shape) == ("meta", (2, 5, 6))
    grads = torch.autograd.grad(y.sum(), (x, module.weight))
    assert [(g.device.type, g.shape) for g in grads] == [("meta", (2, 5, 6)), ("meta", (6,))]


def test_module():
    module = MyOp(5, frequency=0.5)
    assert dict(module.named_parameters()).keys() == {"weight"} and module.weight.shape == (5,)
    assert repr(module) == "MyOp(features=5, frequency=0.5)"
    x = torch.randn(3, 5)
    torch.testing.assert_close(module(x), native(x, module.weight, 0.5))
    with pytest.raises(TypeError, match=r"^MyOp: features must be an int, got float"):
        MyOp(5.0)
    with pytest.raises(ValueError, match=r"^MyOp: features must be positive, got 0"):
        MyOp(0)
    with pytest.raises(TypeError, match=r"^MyOp: dtype must be float16, bfloat16, float32 or float64, got torch.int64"):
        MyOp(3, dtype=torch.int64)


@pytest.mark.cuda
@needs_cuda
def test_cuda_round_trip_matches_native():
    with round_trip():
        assert_matches(my_op, native, *inputs((3, 6, 7), (7,), device="cuda"))


@pytest.mark.cuda
@needs_cuda
@needs_cupy
def test_cuda_tensors_never_leave_the_gpu():
    x, weight, frequency = inputs((2, 16, 16), (16,), device="cuda")

    def step():
        my_op(x, weight, frequency).sum().backward()

    assert_stays_on_gpu(step)


# ----------------------------------------------------------------------------
# This op's design: change or delete each test where your op differs.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(("x_shape", "weight_shape"), [((), ()), ((5,), (5,)), ((3, 0), (1,)), ((0,), ())])
def test_elementwise_on_any_shape(x_shape, weight_shape, device):
    """An elementwise op takes any shape, 0-d and empty included. Delete if your op needs (..., H, W)."""
    assert_matches(my_op, native, *inputs(x_shape, weight_shape, device=device))


def test_module_weight_trains_to_a_target():
    """The weight is learnable. Delete if your op has no parameter; change the target with the math."""
    torch.manual_seed(0)
    target = torch.tensor([0.5, -1.0, 2.0])
    module = MyOp(3, frequency=0.9)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    x = torch.randn(64, 3)
    y = native(x, target, 0.9)
    for _ in range(300):
        optimizer.zero_grad()
        (module(x) - y).pow(2).mean().backward()
        optimizer.step()
    torch.testing.assert_close(module.weight.detach(), target, atol=1e-2, rtol=0)
