"""The op factory: ops of signatures unlike the starters', each declared once, on every path that reaches them."""

import functools
import inspect
import re
import types

import numpy as np
import pytest
import torch
from packaging.version import Version
from torch_scipy_op import _boundary, _derivatives, _kernel_ops, _op_factory
from torch_scipy_op._checks import strict_checks
from torch_scipy_op._op_factory import declare_op

F64 = torch.float64


def randn(*shape):
    return torch.randn(shape, dtype=F64, requires_grad=True)


# A learnable 1-D filter along the last dim: taps of shape (K,), which do not broadcast with x.
def taps_kernel(backend, x, taps):
    assert taps.ndim == 1, "kernels get a parameter in its own shape"
    return backend.ndimage.correlate1d(x, taps, axis=-1, mode="constant")


def taps_backward(backend, grad, x, taps):
    return backend.ndimage.convolve1d(grad, taps, axis=-1, mode="constant"), _taps_gradient(grad, x, len(taps))


def taps_jvp(backend, x_tangent, taps_tangent, x, taps):
    return taps_kernel(backend, x_tangent, taps) + taps_kernel(backend, x, taps_tangent)


def taps_curvature(backend, grad, x_direction, taps_direction, taps):
    direction_in_x = backend.ndimage.convolve1d(grad, taps_direction, axis=-1, mode="constant")
    return direction_in_x, _taps_gradient(grad, x_direction, len(taps))


def _taps_gradient(grad, x, size):
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(size // 2, size - 1 - size // 2)])
    return np.stack([(grad * padded[..., k : k + x.shape[-1]]).sum() for k in range(size)])


def check_taps(x, taps):
    if taps.dim() != 1:
        raise ValueError(f"filtered: taps must have shape (K,), got shape {tuple(taps.shape)}")


FILTERED = declare_op(
    "op_factory_test::filtered",
    "(Tensor x, Tensor taps) -> Tensor",
    forward=taps_kernel,
    backward=taps_backward,
    jvp=taps_jvp,
    curvature=taps_curvature,
    parameters=("taps",),
    batched=True,
    third_derivatives_are_zero=True,
    check=check_taps,
    fake=lambda x, taps: x.new_empty(x.shape),
)


def native_filtered(x, taps):
    k = taps.shape[0]
    padded = torch.nn.functional.pad(x, (k // 2, k - 1 - k // 2))
    return padded.unfold(-1, k, 1) @ taps


def test_a_parameter_reaches_the_kernels_in_its_own_shape():
    """Values, gradients, per-sample gradients, vmap over the taps, double backward: as native."""
    x, taps = randn(4, 3, 7), randn(3)
    torch.testing.assert_close(FILTERED(x, taps), native_filtered(x, taps))
    assert torch.autograd.gradcheck(FILTERED, (x, taps), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(FILTERED, (x, taps), check_fwd_over_rev=True)

    def per_sample(op):
        return torch.func.vmap(torch.func.grad(lambda t, x: op(x, t).pow(2).sum()), in_dims=(None, 0))(taps, x)

    torch.testing.assert_close(per_sample(FILTERED), per_sample(native_filtered))
    many = randn(5, 3)
    by_taps = torch.func.vmap(FILTERED, in_dims=(None, 0))(x, many)
    torch.testing.assert_close(by_taps, torch.func.vmap(native_filtered, in_dims=(None, 0))(x, many))


def test_a_check_names_the_shape_the_user_passed_under_vmap_too():
    with pytest.raises(ValueError, match=r"^filtered: taps must have shape \(K,\), got shape \(2, 3\)"):
        FILTERED(randn(4, 7), randn(2, 3))
    with pytest.raises(ValueError, match=r"^filtered: taps must have shape \(K,\), got shape \(2, 3\)"):
        torch.func.vmap(FILTERED, in_dims=(0, None))(randn(4, 7), randn(2, 3))


def test_a_bilinear_ops_third_derivatives_are_zero_without_a_kernel():
    """Third derivatives of a loss of it, reverse and forward over reverse, as native: no kernel needed."""
    x, taps = randn(2, 6), randn(3)

    def third(op):
        (grad,) = torch.autograd.grad(op(x, taps).pow(3).sum(), x, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), taps, create_graph=True)
        return torch.autograd.grad(second.sum(), (x, taps))

    torch.testing.assert_close(third(FILTERED), third(native_filtered))

    def loss(op):
        return lambda x, taps: op(x, taps).pow(3).sum()

    for argnums in (0, 1):
        jacobian = torch.func.jacrev(torch.func.hessian(loss(FILTERED), argnums=argnums), argnums=argnums)
        expected = torch.func.jacrev(torch.func.hessian(loss(native_filtered), argnums=argnums), argnums=argnums)
        torch.testing.assert_close(jacobian(x, taps), expected(x, taps))
    # torch.func loses every autograd.Function's derivative there; the op says so instead of giving zeros.
    with pytest.raises(RuntimeError, match=r"^filtered: torch.func gives wrong values for a reverse-mode derivative"):
        torch.func.jacfwd(torch.func.hessian(loss(FILTERED)))(x, taps)


# A reduction over the whole input, which no batch dim may cross; its kernels do not say `batched`.
def normalized_kernel(backend, x):
    return x / x.sum()


def normalized_backward(backend, grad, x):
    total = x.sum()
    return grad / total - (grad * x).sum() / total**2


NORMALIZED = declare_op(
    "op_factory_test::normalized", "(Tensor x) -> Tensor", forward=normalized_kernel, backward=normalized_backward
)


def test_vmap_runs_an_op_once_per_sample_unless_it_says_it_batches():
    x = torch.rand(3, 5, dtype=F64)
    torch.testing.assert_close(torch.func.vmap(NORMALIZED)(x), torch.stack([row / row.sum() for row in x]))
    jacobians = torch.func.vmap(torch.func.jacrev(NORMALIZED))(x)
    torch.testing.assert_close(jacobians, torch.func.vmap(torch.func.jacrev(lambda x: x / x.sum()))(x))


def test_a_derivative_left_out_raises_one_clear_error_where_it_is_needed():
    x = torch.rand(4, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(NORMALIZED(x).pow(2).sum(), x)  # reverse mode is declared
    expected = torch.autograd.grad((x / x.sum()).pow(2).sum(), x)[0]
    torch.testing.assert_close(grad, expected)
    for needs, derivative in [
        ("forward mode needs a jvp kernel", lambda: torch.func.jacfwd(NORMALIZED)(x.detach())),
        ("double backward needs a jvp kernel", lambda: _double_backward(NORMALIZED, x)),
    ]:
        with pytest.raises(RuntimeError, match=f"^normalized: {needs}, which the op does not declare; a jvp kernel"):
            derivative()


def test_a_backward_pass_that_only_stores_an_output_s_grad_runs_no_derivative_kernel():
    """backward(inputs=[h]) runs h's node (to store h.grad) and needs no gradient of its input: an op without
    the derivative that would give it must not raise, for one output or two, nor may the Backward node."""
    x = torch.rand(4, dtype=F64, requires_grad=True)
    forward_only = declare_op("op_factory_test::forward_only", "(Tensor x) -> (Tensor a, Tensor b)",
                              forward=lambda backend, x: (backend.xp.exp(x), backend.xp.sin(x)))  # fmt: skip
    a, b = forward_only(x)
    (a.sum() + 2 * b.sum()).backward(inputs=[a, b])
    torch.testing.assert_close(
        (a.grad, b.grad, x.grad), (torch.ones(4, dtype=F64), torch.full((4,), 2.0, dtype=F64), None)
    )
    h = NORMALIZED(x)  # a backward kernel, no jvp: its Backward node has no derivative of its own
    (g,) = torch.autograd.grad(h.pow(2).sum(), x, create_graph=True)
    (g * g).sum().backward(inputs=[g])
    torch.testing.assert_close(g.grad, 2 * g)


def _double_backward(op, x):
    (grad,) = torch.autograd.grad(op(x).pow(2).sum(), x, create_graph=True)
    return torch.autograd.grad(grad.sum(), x)


# A batched reduction: outputs with fewer dims than the input.
ROW_SUM = declare_op(
    "op_factory_test::row_sum",
    "(Tensor x) -> Tensor",
    forward=lambda backend, x: x.sum(axis=-1),
    backward=lambda backend, grad, x: grad[..., None] + 0 * x,
    jvp=lambda backend, x_tangent: x_tangent.sum(axis=-1),
    batched=True,
    fake=lambda x: x.new_empty(x.shape[:-1]),
)


def test_batched_derivatives_of_a_reduction_are_right_under_vmap():
    x = torch.randn(2, 3, dtype=F64)
    expected = torch.func.jacrev(lambda x: x.sum(-1))(x)
    torch.testing.assert_close(torch.func.jacrev(ROW_SUM)(x), expected)
    torch.testing.assert_close(torch.func.jacfwd(ROW_SUM)(x), expected)


# The index of each row's largest element, saved by the forward; reverse mode only.
def row_max_kernel(backend, x, dim):
    index = backend.xp.argmax(x, axis=dim)
    return backend.xp.take_along_axis(x, index[..., None], axis=dim)[..., 0], index


def row_max_backward(backend, grad, x, index, dim):
    grad_x = backend.xp.zeros_like(x)
    backend.xp.put_along_axis(grad_x, index[..., None], grad[..., None], axis=dim)
    return grad_x


def _row_max_fake(x, dim):
    return x.new_empty(x.shape[:-1]), x.new_empty(x.shape[:-1], dtype=torch.int64)


ROW_MAX = declare_op(
    "op_factory_test::row_max",
    "(Tensor x, int dim=-1) -> Tensor",
    forward=row_max_kernel,
    backward=row_max_backward,
    saved=("index",),
    check=lambda x, dim: None if dim == -1 else (_ for _ in ()).throw(ValueError("row_max: dim must be -1")),
    fake=_row_max_fake,
)


def test_a_saved_index_travels_to_the_backward_and_only_x_is_kept():
    x = randn(3, 5)
    torch.testing.assert_close(ROW_MAX(x), x.max(-1).values)
    assert torch.autograd.gradcheck(ROW_MAX, (x,))
    torch.testing.assert_close(torch.ops.op_factory_test.row_max(x), ROW_MAX(x, -1))
    with pytest.raises(RuntimeError, match=r"^row_max: forward mode needs a jvp kernel"):
        torch.func.jvp(ROW_MAX, (x.detach(),), (torch.ones_like(x),))


# exp, whose derivatives are its output: the kernels name the output (`y` in the schema), which the op
# keeps as native keeps it, instead of the forward returning it a second time as a saved value.
def exp_backward(backend, grad, y):
    return grad * y


def exp_jvp(backend, x_tangent, y):
    return x_tangent * y


def exp_curvature(backend, grad, x_direction, y):
    return grad * y * x_direction


EXP = declare_op(
    "op_factory_test::exp",
    "(Tensor x) -> Tensor y",
    forward=lambda backend, x: backend.xp.exp(x),
    backward=exp_backward,
    jvp=exp_jvp,
    curvature=exp_curvature,
    batched=True,
)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_second_derivatives_through_torch_compile_are_native_s(backend):
    """A Function that Dynamo traces loses its double backward, and gave zeros where native gave the hessian
    (backend="eager"). The graph holds the op's forward kernel op instead, whose autograd applies the Function,
    as it holds a native op: each backend then gives, or refuses, what it gives native."""
    x, w = randn(3), randn(3)

    def penalty(f):  # a gradient penalty: the loss's gradient is part of the loss
        x_ = x.detach().requires_grad_()
        y = torch.compile(lambda x: f(x * w).pow(2).sum(), backend=backend)(x_)
        (g,) = torch.autograd.grad(y, x_, create_graph=True)
        return torch.autograd.grad(y + g.pow(2).sum(), x_)[0]

    def hessian(f):
        return torch.autograd.functional.hessian(torch.compile(lambda x: f(x * w).pow(2).sum(), backend=backend), x)

    for second_order in (penalty, hessian):
        outcomes = []
        for f in (EXP, torch.exp):
            torch._dynamo.reset()
            try:
                outcomes.append(second_order(f))
            except RuntimeError as error:  # aot_autograd refuses double backward
                outcomes.append(str(error))
        if isinstance(outcomes[1], str):
            assert outcomes[0] == outcomes[1]
        else:
            torch.testing.assert_close(outcomes[0], outcomes[1])


def test_torch_func_inside_torch_compile_gives_native_values_where_torch_traces_it():
    """Compiled code keeps tracing the op's Function under torch.func transforms: torch 2.15 differentiates it
    there. Older releases may refuse."""
    x, w = randn(3).detach(), randn(3).detach()

    def compiled_grad(f):
        torch._dynamo.reset()
        return torch.compile(torch.func.grad(lambda x: f(x * w).pow(2).sum()), fullgraph=True)(x)

    try:
        ours = compiled_grad(EXP)
    except Exception:
        if Version(torch.__version__).release >= (2, 15):
            raise
    else:
        torch.testing.assert_close(ours, compiled_grad(torch.exp))


def test_batched_gradients_give_native_values_or_refuse_where_a_graph_is_recorded():
    """torch records no graph for an autograd.Function applied to is_grads_batched's gradients: differentiating
    the result again gave constants (wrong second derivatives). Where no graph is recorded, or forward mode
    differentiates the result (a forward-over-reverse hessian), the values are native's."""
    x, w = randn(3), randn(3)
    cotangents = randn(4, 3)

    def batched_grads(f, create_graph):
        x_ = x.detach().requires_grad_()
        return torch.autograd.grad(f(x_ * w), x_, cotangents, is_grads_batched=True, create_graph=create_graph)[0]

    torch.testing.assert_close(batched_grads(EXP, False), batched_grads(torch.exp, False))
    refusal = r"^exp: a backward pass with create_graph=True on batched gradients \(torch.autograd.grad with is_gr"
    with pytest.raises(RuntimeError, match=refusal):
        batched_grads(EXP, True)
    functional = torch.autograd.functional
    with pytest.raises(RuntimeError, match=refusal):
        functional.jacobian(lambda x: EXP(x * w), x.requires_grad_(), vectorize=True, create_graph=True)
    loss = lambda f: lambda x: f(x * w).pow(2).sum()  # noqa: E731
    for strategy in ("reverse-mode", "forward-mode"):
        torch.testing.assert_close(
            functional.hessian(loss(EXP), x, vectorize=True, outer_jacobian_strategy=strategy),
            functional.hessian(loss(torch.exp), x, vectorize=True, outer_jacobian_strategy=strategy),
        )


@pytest.mark.parametrize(
    ("op", "native"), [(EXP, torch.exp), (FILTERED, native_filtered), (NORMALIZED, None)], ids=["exp", "taps", "once"]
)
def test_an_empty_batch_gives_empty_results_as_native(op, native):
    """vmap over a batch of 0 (a batched kernel, a vmapped parameter, a kernel run once per sample) and
    derivatives of an empty input: empty results of native's shapes, where the op's rules once took a first
    sample that is not there (an IndexError)."""
    x, taps = randn(0, 4), randn(3)
    args = (lambda x: (x, taps)) if op is FILTERED else (lambda x: (x,))
    in_dims = (0, None) if op is FILTERED else 0
    ours = torch.func.vmap(op, in_dims=in_dims)(*args(x))
    assert ours.shape == (0, 4)
    if op is FILTERED:  # the parameter vmapped too: one call per sample, of which there are none
        assert torch.func.vmap(op)(x, randn(0, 3)).shape == (0, 4)
    loss = lambda f: lambda x: f(*args(x)).pow(2).sum()  # noqa: E731
    for transform in (torch.func.jacrev, torch.func.jacfwd, torch.func.hessian, lambda f: torch.func.vmap(
            torch.func.grad(f))):  # fmt: skip
        if native is None:  # no jvp kernel: reverse mode alone
            if transform is not torch.func.jacfwd and transform is not torch.func.hessian:
                assert transform(loss(op))(x.detach()).numel() == 0
            continue
        try:
            expected = transform(loss(native))(x.detach())
        except RuntimeError:  # native has no batching rule for an empty batch here (unfold_backward)
            expected = None
        ours = transform(loss(op))(x.detach())
        if expected is None:
            assert ours.numel() == 0
        else:
            torch.testing.assert_close(ours, expected)


def test_kernels_that_name_the_output_get_it_and_the_op_keeps_it_as_native_does():
    """Every order of derivative matches native's; the output is a state argument of the derivative
    kernel ops, and changing it in place refuses the backward, as for torch.exp."""
    x = randn(3, 4)
    torch.testing.assert_close(EXP(x), torch.exp(x))
    assert torch.autograd.gradcheck(EXP, (x,), check_forward_ad=True, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(EXP, (x,), check_fwd_over_rev=True)
    loss = lambda f: lambda x: f(x).pow(2).sum()  # noqa: E731
    torch.testing.assert_close(torch.func.hessian(loss(EXP))(x), torch.func.hessian(loss(torch.exp))(x))
    torch.testing.assert_close(
        torch.func.vmap(torch.func.grad(loss(EXP)))(x), torch.func.vmap(torch.func.grad(loss(torch.exp)))(x)
    )
    compiled = torch.compile(lambda x: EXP(x).pow(2).sum(), fullgraph=True)
    torch.testing.assert_close(torch.autograd.grad(compiled(x), x)[0], 2 * torch.exp(2 * x))
    assert "Tensor? y" in str(EXP.kernel_ops["backward"].op._schema)
    y = EXP(x)
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


# Plain arguments of every schema type, with defaults, and an optional tensor.
def every_type_kernel(backend, x, offset, scale, power, axes, flip, mode):
    y = x * scale + (0 if offset is None else offset)
    y = y**power if mode == "power" else y
    return backend.xp.flip(y, axis=tuple(axes)) if flip else y


EVERY_TYPE = declare_op(
    "op_factory_test::every_type",
    "(Tensor x, Tensor? offset=None, float scale=2.0, int power=1, int[] axes=[-1], bool flip=False, "
    "str mode='power') -> Tensor",
    forward=every_type_kernel,
)


def native_every_type(x, offset=None, scale=2.0, power=1, axes=(-1,), flip=False, mode="power"):
    y = x * scale + (0 if offset is None else offset)
    y = y**power if mode == "power" else y
    return y.flip(axes) if flip else y


@pytest.mark.parametrize(
    "call",
    [(), (None, 3.0), (None, 3.0, 2), (None, 1.0, 3, [0], True), (None, 1.0, 2, (0, 1), True, "plain")],
    ids=["defaults", "float", "int", "int[] and bool", "str"],
)
def test_plain_arguments_and_their_defaults_on_every_path(call):
    x, offset = torch.randn(3, 4, dtype=F64), torch.randn(4, dtype=F64)
    expected = native_every_type(x, *call)
    torch.testing.assert_close(EVERY_TYPE(x, *call), expected)
    ops_call = [list(a) if isinstance(a, tuple) else a for a in call]
    torch.testing.assert_close(torch.ops.op_factory_test.every_type(x, *ops_call), expected)
    compiled = torch.compile(lambda x: EVERY_TYPE(x, *call), fullgraph=True)
    torch.testing.assert_close(compiled(x), expected)
    torch.testing.assert_close(EVERY_TYPE(x, offset, *call[1:]), native_every_type(x, offset, *call[1:]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": "2"}, "scale must be a real number, got str"),
        ({"power": 2.0}, "power must be an int, got float"),
        ({"axes": [0.5]}, r"axes\[0\] must be an int, got float"),
        ({"axes": 0}, "axes must be a list or tuple of ints, got int"),
        ({"flip": 1}, "flip must be a bool, got int"),
        ({"mode": 1}, "mode must be a str, got int"),
        ({"offset": 1.0}, "offset must be a torch.Tensor, got float"),
    ],
)
def test_plain_arguments_of_the_wrong_type_are_refused_by_name(kwargs, message):
    with pytest.raises(TypeError, match=f"^every_type: {message}"):
        EVERY_TYPE(torch.randn(3), **kwargs)


def test_the_public_function_must_have_the_schemas_signature():
    def every_type(x, offset=None, scale=2.0, power=1, axes=(-1,), flip=False, mode="power"):
        return EVERY_TYPE(x, offset, scale, power, axes, flip, mode)

    public = EVERY_TYPE.public(every_type)
    assert list(inspect.signature(public).parameters) == [
        a.name for a in torch.ops.op_factory_test.every_type.default._schema.arguments
    ]

    def other_default(x, offset=None, scale=1.0, power=1, axes=(-1,), flip=False, mode="power"):
        return EVERY_TYPE(x, offset, scale, power, axes, flip, mode)

    with pytest.raises(TypeError, match=r"other_default's arguments .* are not the schema's"):
        EVERY_TYPE.public(other_default)


def test_a_declaration_that_names_what_no_kernel_gets_is_refused():
    def kernel(backend, x):
        return x

    def backward(backend, grad, y):
        return grad

    with pytest.raises(TypeError, match=r"^bad: the backward kernel backward takes 'y', which is not something a"):
        declare_op("op_factory_test::bad", "(Tensor x) -> Tensor", forward=kernel, backward=backward)
    with pytest.raises(ValueError, match=r"^bad2: name every output of an op with several"):
        declare_op("op_factory_test::bad2", "(Tensor x) -> (Tensor, Tensor)", forward=kernel)
    with pytest.raises(ValueError, match=r"^bad3: argument k has type List\[float\], which ops cannot take yet"):
        declare_op("op_factory_test::bad3", "(Tensor x, float[] k) -> Tensor", forward=kernel)


def test_checks_see_the_inputs_after_autocast():
    """Autocast's cast comes first: tensors of mixed float dtypes meet every op's rule of one dtype."""
    x, offset = torch.randn(3, 4, dtype=torch.bfloat16), torch.randn(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = EVERY_TYPE(x, offset)
    torch.testing.assert_close(y, native_every_type(x.float(), offset))
    with pytest.raises(TypeError, match=r"^every_type: offset must have the x's dtype torch\.bfloat16"):
        EVERY_TYPE(x, offset)


# ----------------------------------------------------------------------------
# Mistakes in a declaration or a kernel: refused with an error that names them, never a quiet number
# ----------------------------------------------------------------------------


def _scale_kernel(backend, x, w):
    return x * w


def _declare_scale(name, backward, **kwargs):
    return declare_op(f"op_factory_test::{name}", "(Tensor x, Tensor w) -> Tensor",
                      forward=_scale_kernel, backward=backward, **kwargs)  # fmt: skip


@pytest.mark.parametrize(
    ("gradient", "message"),
    [
        (lambda grad, x, w: grad[:1] * w, r"returned shape \(1, 4\) for x, which needs shape \(3, 4\), or a shape"),
        (lambda grad, x, w: 1.0, r"returned the scalar 1.0 for x, which needs shape \(3, 4\)"),
    ],
    ids=["a row for a matrix", "a scalar"],
)
def test_a_gradient_of_the_wrong_shape_is_refused_as_autograd_refuses_it(gradient, message):
    """Only the dims its input was broadcast over are summed; nothing is broadcast to fit."""
    op = _declare_scale("wrong_gradient", lambda backend, grad, x, w: (gradient(grad, x, w), grad * x))
    x, w = randn(3, 4), randn(4)
    with pytest.raises(ValueError, match=f"^wrong_gradient: the backward kernel <lambda> {message}"):
        op(x, w).sum().backward()


def test_a_zero_gradient_may_be_the_scalar_0_and_a_broadcast_input_gets_its_sum():
    op = _declare_scale("zero_gradient", lambda backend, grad, x, w: (0, grad * x))
    x, w = randn(3, 4), randn(4)
    gx, gw = torch.autograd.grad(op(x, w).sum(), (x, w))
    torch.testing.assert_close(gx, torch.zeros_like(x))
    torch.testing.assert_close(gw, x.detach().sum(0))


def test_a_less_precise_or_complex_derivative_is_refused_and_a_more_precise_one_cast():
    """Cast to the op's dtype, a float32 gradient of a float64 op would keep float32's digits, and a complex one
    would lose its imaginary part, without an error; a float64 gradient of a float32 op loses nothing it had."""
    x, w = randn(3, 4), randn(4)
    for wrong, got in ((lambda a: a.astype(np.float32), "float32"), (lambda a: a + 0j, "complex128")):
        backward = functools.partial(lambda wrong, backend, grad, x, w: (wrong(grad * w), grad * x), wrong)
        op = _declare_scale(f"gradient_in_{got}", backward)
        message = (rf"^gradient_in_{got}: the backward kernel <lambda> returned dtype {got} for x, where the op "
                   "computes in float64: a less precise or complex derivative, cast to float64")  # fmt: skip
        with pytest.raises(TypeError, match=message):
            torch.autograd.grad(op(x, w).sum(), x)
    op = _declare_scale("gradient_in_float64", lambda backend, grad, x, w: ((grad * w).astype(np.float64), grad * x))
    x32, w32 = x.float(), w.float()
    (gx,) = torch.autograd.grad(op(x32, w32).sum(), x32)
    assert gx.dtype == torch.float32
    torch.testing.assert_close(gx, w32.detach().expand(3, 4))


def test_the_forward_kernel_takes_the_arguments_by_name_and_backend_first():
    def swapped(backend, w, x):
        return w - x

    op = declare_op("op_factory_test::swapped", "(Tensor x, Tensor w) -> Tensor", forward=swapped)
    x, w = torch.full((2,), 3.0, dtype=F64), torch.full((2,), 1.0, dtype=F64)
    torch.testing.assert_close(op(x, w), w - x)
    torch.testing.assert_close(torch.ops.op_factory_test.swapped(x, w), w - x)

    def no_backend(x, w):
        return x * w

    with pytest.raises(TypeError, match=r"^no_backend: the forward kernel no_backend takes 'x' first; the first par"):
        declare_op("op_factory_test::no_backend", "(Tensor x, Tensor w) -> Tensor", forward=no_backend)

    def unknown(backend, x, weight):
        return x * weight

    with pytest.raises(
        TypeError, match=r"^unknown: the forward kernel unknown takes 'weight', which is not an argument of the sch"
    ):
        declare_op("op_factory_test::unknown", "(Tensor x, Tensor w) -> Tensor", forward=unknown)

    def star(backend, *arrays):
        return arrays[0]

    with pytest.raises(TypeError, match=r"^star: the forward kernel star takes '\*arrays'; a kernel takes each value"):
        declare_op("op_factory_test::star", "(Tensor x) -> Tensor", forward=star)


def _subtract_one_in_place(backend, x):
    x -= 1
    return x


def test_kernels_cannot_change_the_callers_tensors():
    op = declare_op("op_factory_test::in_place", "(Tensor x) -> Tensor", forward=_subtract_one_in_place)
    x = torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match=r"^in_place: the forward kernel _subtract_one_in_place: .*read-only.* copy"):
        op(x)
    torch.testing.assert_close(x, torch.ones(3, dtype=F64))
    assert x._version == 0


def test_strict_checks_catch_a_kernel_that_changes_an_input_where_arrays_are_writable(monkeypatch):
    """CuPy's arrays have no read-only flag: there, only the strict checks see a kernel that writes to its input."""
    host_array = _boundary._host_array
    monkeypatch.setattr(_boundary, "_host_array", lambda t, writable=False: host_array(t, writable=True))
    op = declare_op("op_factory_test::in_place_writable", "(Tensor x) -> Tensor", forward=_subtract_one_in_place)
    x = torch.ones(3, dtype=F64)
    message = r"^in_place_writable: the forward kernel _subtract_one_in_place changed its input x in place"
    with strict_checks(), pytest.raises(ValueError, match=message):
        op(x)


def test_a_batched_kernel_that_reduces_over_its_input_is_refused_under_vmap():
    total = declare_op("op_factory_test::total", "(Tensor x) -> Tensor", forward=lambda backend, x: x.sum(),
                       batched=True, fake=lambda x: x.new_empty(()))  # fmt: skip
    x = torch.arange(6, dtype=F64).reshape(2, 3)
    torch.testing.assert_close(total(x), x.sum())
    message = (r"^total: the forward kernel <lambda> is declared batched=True, but under vmap over 2 samples it "
               r"returned shape \(\) for result, where the batch's is \(2,\) \(each sample's \(\)")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        torch.func.vmap(total)(x)


@pytest.mark.parametrize(
    ("forward", "fake", "error", "message"),
    [
        (lambda backend, x: x.astype("float64"), None, TypeError, "returned dtype torch.float64 for result, where the "
         r"default fake gives torch.float32 \(the first tensor argument's\): cast the result"),
        (lambda backend, x: x[:1], None, ValueError, r"returned shape \(1, 3\) for result, where the default fake "
         r"gives \(2, 3\) \(the tensor arguments' broadcast shape\): declare a fake= that gives the kernel's shapes"),
        (lambda backend, x: x, lambda x: x.new_empty(x.shape, dtype=torch.float64), TypeError, "returned dtype "
         "torch.float32 for result, where the op's fake gives torch.float64: cast the result, or fix the fake"),
        (lambda backend, x: x[:1], lambda x: x.new_empty(x.shape), ValueError, r"returned shape \(1, 3\) for result, "
         r"where the op's fake gives \(2, 3\): fix the kernel, or the fake, whichever is wrong"),
    ],
    ids=["dtype", "shape", "dtype, declared fake", "shape, declared fake"],
)  # fmt: skip
def test_a_forward_result_that_differs_from_the_fake_is_refused_in_eager_code(forward, fake, error, message):
    """As torch.compile would build on the fake's shapes and dtypes. Either may be the wrong one, where the op
    declares its fake."""
    op = declare_op("op_factory_test::unlike_fake", "(Tensor x) -> Tensor", forward=forward, fake=fake)
    with pytest.raises(error, match=f"^unlike_fake: the forward kernel <lambda> {message}"):
        op(torch.randn(2, 3))


@pytest.mark.parametrize(
    ("schema", "saved", "message"),
    [
        ("(Tensor x, Tensor grad) -> Tensor", (), "the argument 'grad' has the name kernels get an output's gradient"),
        ("(Tensor x, float needs_input_grad) -> Tensor", (), "the argument 'needs_input_grad' has the name kernels"),
        ("(Tensor x) -> Tensor", ("result",), "'result' names both an output and a saved value"),
        ("(Tensor x, float s) -> Tensor", ("s",), "'s' names both an argument and a saved value"),
        ("(Tensor x, Tensor x_tangent) -> Tensor", (), "the argument 'x_tangent' has the name kernels get x's tangent"),
        ("(Tensor x, int vmap_batch) -> Tensor", (), "the argument 'vmap_batch' has the name kernels get the batch"),
    ],
    ids=["grad", "needs_input_grad", "result", "an argument saved", "x_tangent", "vmap_batch"],
)
def test_names_that_collide_are_refused_when_the_op_is_declared(schema, saved, message):
    def forward(backend, x):
        return x

    with pytest.raises(ValueError, match=f"^collides: {message}"):
        declare_op("op_factory_test::collides", schema, forward=forward, saved=saved)


def test_declaring_again_replaces_the_op_and_a_failed_declaration_leaves_nothing():
    def times(k):
        return lambda backend, x: x * k

    def wrong_backward(backend, grad, y):
        return grad

    x = torch.ones(2, dtype=F64)
    with pytest.raises(TypeError, match="takes 'y'"):
        declare_op("op_factory_test::again", "(Tensor x) -> Tensor", forward=times(2), backward=wrong_backward)
    assert not hasattr(torch.ops.op_factory_test, "again_forward")
    for k in (2, 3):  # the fixed declaration, then the same op declared again: a cell run twice
        op = declare_op("op_factory_test::again", "(Tensor x) -> Tensor", forward=times(k))
        torch.testing.assert_close(op(x), k * x)
        torch.testing.assert_close(torch.ops.op_factory_test.again(x), k * x)
        torch.testing.assert_close(torch.compile(op, fullgraph=True)(x), k * x)


def test_an_earlier_declarations_function_refuses_and_another_op_cannot_take_a_kernel_ops_name():
    """Its kernels are undone: it must not mix them with the new declaration's."""
    first = declare_op("op_factory_test::replaced", "(Tensor x) -> Tensor", forward=lambda backend, x: x * 2)
    second = declare_op("op_factory_test::replaced", "(Tensor x) -> Tensor", forward=lambda backend, x: x * 3)
    x = torch.ones(2, dtype=F64)
    with pytest.raises(RuntimeError, match=r"^replaced was declared again, and this is the earlier declaration"):
        first(x)
    torch.testing.assert_close(second(x), 3 * x)
    message = r"^replaced_forward: the operator op_factory_test::replaced_forward is one that the op op_factory_test::"
    with pytest.raises(ValueError, match=message):
        declare_op("op_factory_test::replaced_forward", "(Tensor x) -> Tensor", forward=lambda backend, x: x)
    torch.testing.assert_close(second(x), 3 * x)


def test_a_graph_recorded_before_the_op_was_declared_again_keeps_its_kernels_or_refuses():
    """Plain backward passes run the kernels the graph was recorded with. Where one takes the dispatcher
    (batched gradients), the operator runs the new declaration's kernel: that gave its numbers, and refuses."""

    def declare(k):
        return declare_op("op_factory_test::rescaled", "(Tensor x) -> Tensor", forward=lambda backend, x: k * x,
                          backward=lambda backend, grad: k * grad, batched=True)  # fmt: skip

    x = randn(3)
    y = declare(2.0)(x)
    declare(3.0)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x, retain_graph=True)[0], torch.full((3,), 2.0, dtype=F64))
    message = r"^torch.ops.op_factory_test.rescaled_backward was declared again since this graph was recorded"
    with pytest.raises(RuntimeError, match=message):
        torch.autograd.grad(y, x, torch.eye(3, dtype=F64), is_grads_batched=True)


def test_a_derivative_kernel_returns_one_result_per_input_and_a_partial_is_a_kernel():
    def two_for_one(backend, grad, x, scale):
        return grad * scale, grad

    scaled = functools.partial(lambda backend, x, scale, offset: x * scale + offset, offset=1.0)
    op = declare_op("op_factory_test::two_for_one", "(Tensor x, float scale) -> Tensor", forward=scaled,
                    backward=two_for_one)  # fmt: skip
    x = randn(3)
    torch.testing.assert_close(op(x, 2.0), 2 * x + 1)
    with pytest.raises(TypeError, match=r"^two_for_one: the backward kernel two_for_one returned 2 values, where it"):
        op(x, 2.0).sum().backward()


def test_a_batched_backward_that_sums_over_leading_dims_is_right_under_vmap():
    """Its result has a batch of 1 under vmap's rule, as one the same for every sample would: it runs per sample."""

    def backward(backend, grad, x, w):
        return grad * w, (grad * x).sum(axis=0, keepdims=True)  # the sum over x's rows, for one sample

    op = declare_op("op_factory_test::row_weighted", "(Tensor x, Tensor w) -> Tensor",
                    forward=lambda backend, x, w: x * w, backward=backward, batched=True)  # fmt: skip
    x, w = torch.randn(3, 4, 5, dtype=F64), torch.randn(5, dtype=F64)
    per_sample = torch.func.vmap(lambda x: torch.func.grad(lambda w: op(x, w).sum())(w))(x)
    torch.testing.assert_close(per_sample, x.sum(1))


def test_a_fake_of_data_dependent_size_is_asked_under_fake_tensors_in_eager_code_too():
    def fake(x):
        return x.new_empty(torch.library.get_ctx().new_dynamic_size())

    positive = declare_op("op_factory_test::positive", "(Tensor x) -> Tensor", forward=lambda backend, x: x[x > 0],
                          fake=fake)  # fmt: skip
    x = torch.tensor([1.0, -1.0, 2.0])
    torch.testing.assert_close(positive(x), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(positive(-x), torch.tensor([1.0]))


def test_the_public_function_and_torch_ops_take_a_bool_for_a_float_alike():
    """As torch's own functions take it (torch.nn.functional.elu(x, alpha=True)), and as the dispatcher does."""
    x = torch.randn(3, 4, dtype=F64)
    expected = native_every_type(x, None, 1.0)
    torch.testing.assert_close(EVERY_TYPE(x, None, True), expected)
    torch.testing.assert_close(torch.ops.op_factory_test.every_type(x, None, True), expected)


def _fake_in_float32_for_halves(x):
    """A fake that says halves come back in float32: they are computed in float32, but returned in x's dtype."""
    return x.new_empty(x.shape, dtype=torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype)


HALF_FAKE = declare_op("op_factory_test::half_fake", "(Tensor x) -> Tensor", forward=lambda backend, x: 2 * x,
                       fake=_fake_in_float32_for_halves)  # fmt: skip


@HALF_FAKE.public
def half_fake(x):
    return HALF_FAKE(x)


def test_the_contract_opchecks_the_fake_in_every_dtype_the_op_takes():
    """A fake wrong only in half precision passes in float32 and float64, and fails the contract in float16."""
    from torch_scipy_op.testing import OpContract

    class Contract(OpContract):
        op = staticmethod(half_fake)
        native = staticmethod(lambda x: 2 * x)
        samples = ({"x": (2, 3)},)

    for dtype in (torch.float32, torch.float64):
        Contract().test_opcheck(dtype, False, "cpu")
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(Exception, match=r"returned dtype torch\.b?float16 for result, where the op's fake gives"):
            Contract().test_opcheck(dtype, False, "cpu")


# ----------------------------------------------------------------------------
# Derivatives and autocast as native
# ----------------------------------------------------------------------------


def test_autocast_keeps_float64_and_computes_halves_in_float32():
    """As native ops that autocast runs in float32 (the FFTs): float64 is never cast, halves are cast up."""
    x = torch.randn(3, 4, dtype=F64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = EVERY_TYPE(x, None, 3.0)
        half = EVERY_TYPE(x.to(torch.bfloat16), None, 3.0)
        assert torch.mm(x, x.T).dtype == F64  # native's rule
    assert y.dtype == F64
    torch.testing.assert_close(y, native_every_type(x, None, 3.0), rtol=0, atol=0)
    assert half.dtype == torch.float32


# A complex result, as the factory takes one: real and imaginary parts in a last dim of 2, which the public
# function views as complex, so torch gives its derivatives by its own convention (Re(J^H g) for a real x).
def rfft_pairs_kernel(backend, x):
    y = backend.fft.rfft(x, axis=-1)
    return backend.xp.stack([y.real, y.imag], axis=-1)


def rfft_pairs_backward(backend, grad, x):
    g = grad[..., 0] + 1j * grad[..., 1]
    return x.shape[-1] * backend.fft.ifft(g, n=x.shape[-1], axis=-1).real


RFFT_PAIRS = declare_op(
    "op_factory_test::rfft_pairs",
    "(Tensor x) -> Tensor",
    forward=rfft_pairs_kernel,
    backward=rfft_pairs_backward,
    jvp=lambda backend, x_tangent: rfft_pairs_kernel(backend, x_tangent),
    curvature=lambda backend, grad, x_direction: 0,
    third_derivatives_are_zero=True,
    fake=lambda x: x.new_empty((*x.shape[:-1], x.shape[-1] // 2 + 1, 2)),
)


def rfft(x):
    return torch.view_as_complex(RFFT_PAIRS(x))


def test_a_complex_result_has_the_gradient_torch_gives_a_complex_output():
    x = randn(3, 8)
    torch.testing.assert_close(rfft(x), torch.fft.rfft(x))
    weights = torch.randn(5, dtype=torch.complex128)

    def loss(fft):
        return lambda x: fft(x).abs().pow(2).sum() + (fft(x) * weights).real.sum()

    torch.testing.assert_close(torch.autograd.grad(loss(rfft)(x), x), torch.autograd.grad(loss(torch.fft.rfft)(x), x))
    assert torch.autograd.gradcheck(rfft, (x,), check_forward_ad=True)
    torch.testing.assert_close(torch.func.hessian(loss(rfft))(x), torch.func.hessian(loss(torch.fft.rfft))(x))


def test_a_complex_output_is_refused_at_the_first_call_with_the_way_to_return_it():
    complex_fft = declare_op("op_factory_test::complex_fft", "(Tensor x) -> Tensor",
                             forward=lambda backend, x: backend.fft.rfft(x, axis=-1))  # fmt: skip
    with pytest.raises(TypeError, match=r"^complex_fft: the forward kernel <lambda> gives the output result in torch"):
        complex_fft(randn(3, 8))


def test_kernels_are_told_the_gradients_the_engine_will_use_not_what_requires_grad():
    """As native: asking for x's gradient alone needs nothing of w's, though w requires grad too."""

    def backward(backend, grad, x, w, needs_input_grad):
        assert needs_input_grad == (True, False), needs_input_grad
        return grad * w, None

    op = _declare_scale("told", backward)
    x, w = randn(3, 4), randn(4)
    (gx,) = torch.autograd.grad(op(x, w).sum(), x)
    torch.testing.assert_close(gx, w.detach().expand(3, 4))


def test_an_input_declared_nondifferentiable_is_refused_only_where_its_derivative_is_needed():
    fixed_power = declare_op(
        "op_factory_test::fixed_power",
        "(Tensor a, float scale, Tensor x) -> Tensor",  # a plain argument between the tensors
        forward=lambda backend, a, scale, x: scale * x**a,
        backward=lambda backend, grad, a, scale, x: (None, grad * scale * a * x ** (a - 1)),
        jvp=lambda backend, x_tangent, a, scale, x: scale * a * x ** (a - 1) * x_tangent,
        nondifferentiable=("a",),
        batched=True,
    )
    a, x = torch.full((3,), 2.5, dtype=F64, requires_grad=True), torch.rand(3, dtype=F64, requires_grad=True) + 0.5
    (gx,) = torch.autograd.grad(fixed_power(a, 2.0, x).sum(), x)
    torch.testing.assert_close(gx, 2.0 * 2.5 * x.detach() ** 1.5)
    message = r"^fixed_power: backward needs the derivative in a, which the op declares nondifferentiable"
    with pytest.raises(RuntimeError, match=message):
        torch.autograd.grad(fixed_power(a, 2.0, x).sum(), a)
    with pytest.raises(RuntimeError, match=r"^fixed_power: forward mode needs the derivative in a"):
        torch.func.jvp(lambda a: fixed_power(a, 2.0, x.detach()), (a.detach(),), (torch.ones(3, dtype=F64),))
    tangent = torch.func.jvp(lambda x: fixed_power(a.detach(), 2.0, x), (x.detach(),), (torch.ones(3, dtype=F64),))
    torch.testing.assert_close(tangent[1], gx)


def test_plain_eager_code_applies_the_function_through_torch_s_c_method_or_else_function_apply(monkeypatch):
    """Function.apply's Python wrapper (before torch 2.15) does nothing for plain eager calls but cost: they skip
    it, where torch's C method under it is there; where that is missing or changed, Function.apply gives the
    same values and grads. From torch 2.15 Function.apply is in C itself, and is what they call."""
    python_apply = isinstance(torch.autograd.Function.__dict__["apply"], classmethod)
    assert isinstance(EXP.direct, types.BuiltinMethodType)  # a C method, bound to the Function
    x = randn(3, 4)
    results = []
    for missing in (False, True, "changed"):
        if missing:
            monkeypatch.setattr(_derivatives, "_FUNCTION_APPLY", None if missing is True else lambda *args: None)
        forward = lambda backend, x: backend.xp.exp(x)  # noqa: E731
        name = "exp_through_python" if missing else "exp_through_c"
        op = declare_op(f"op_factory_test::{name}", "(Tensor x) -> Tensor y", forward=forward, backward=exp_backward)
        assert isinstance(op.direct, types.BuiltinMethodType) == (not missing or not python_apply)
        y = op(x)
        assert type(y.grad_fn).__name__ == ("ExpThroughPython" if missing else "ExpThroughC") + "FunctionBackward"
        results.append((y, *torch.autograd.grad(y.sum(), x)))
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[0], (torch.exp(x), torch.exp(x)))


# Every private torch name the op factory reads, where it reads it: a torch release may move or change any of
# them. Each pair of names stands in for the other where one is broken: both broken is tested too.
_PRIVATE_NAMES = {
    "_functorch_transforms_active": [_kernel_ops],
    "_functorch_level": [_kernel_ops],
    "_any_autocast_enabled": [_kernel_ops, _op_factory],
    "_dispatch_mode_depth": [_kernel_ops],
    "_function_mode_enabled": [_kernel_ops],
    "_jit_tracing_state": [_kernel_ops],
    "_profiler_enabled": [_kernel_ops],
    "_compile_frame_hook": [_kernel_ops],
    "_dispatch_keys": [_kernel_ops],
    "_raw_keys": [_kernel_ops],
    "_will_engine_execute_node": [_derivatives],
    "_is_legacy_batched": [_derivatives],
    "_INTERPRETER_STACKS": [_derivatives],
}
_BROKEN_TOGETHER = {"torch.func checks": ["_functorch_transforms_active", "_functorch_level"]}


def _break(monkeypatch, names, how):
    def changed(*args):
        raise RuntimeError("changed")

    for name in names:
        for module in _PRIVATE_NAMES[name]:
            broken = (None, None) if name == "_INTERPRETER_STACKS" and how == "missing" else None
            if name == "_INTERPRETER_STACKS" and how == "raises":
                broken = (changed, changed)
            monkeypatch.setattr(module, name, changed if how == "raises" and broken is None else broken)


def _native_or_refused(ours, theirs) -> str:
    """Native's values, or the op's own clear error: never another value."""
    try:
        got = ours()
    except RuntimeError as error:
        refusal = error
    else:
        torch.testing.assert_close(got, theirs())
        return "native"
    ours_first = r"(exp|torch\.ops\.op_factory_test\.exp\w*)[:,] "
    # torch.compile reports an error raised while it traces the op in an error of its own, which quotes it.
    assert re.match(ours_first, str(refusal)) or re.search(r'got RuntimeError\("' + ours_first, str(refusal)), refusal
    return "refused"


@pytest.mark.parametrize("how", ["missing", "raises"])
@pytest.mark.parametrize("names", [*([n] for n in _PRIVATE_NAMES), *_BROKEN_TOGETHER.values()],
                         ids=[*_PRIVATE_NAMES, *_BROKEN_TOGETHER])  # fmt: skip
def test_a_missing_or_changed_private_torch_name_gives_native_values_or_a_clear_error(monkeypatch, names, how):
    """Eager, compiled, exported and under nested torch.func transforms: the slow, safe path, or a refusal."""
    _break(monkeypatch, names, how)
    _kernel_ops._plain_dispatch_keys.cache_clear()
    x = randn(3)

    def value_and_grad(f):
        return lambda: (f(x), torch.autograd.grad(f(x).pow(2).sum(), x)[0])

    class Module(torch.nn.Module):
        def forward(self, x):
            return EXP(x)

    def exported():
        return torch.export.export(Module(), (x.detach(),)).module()

    def loss(f):
        return lambda x: f(x).pow(2).sum()

    # Where a second check stands in, every path gives native's values; where none can, a refusal may come.
    unknown = names in (_BROKEN_TOGETHER["torch.func checks"], ["_INTERPRETER_STACKS"])
    allowed = {"native", "refused"} if unknown else {"native"}
    eager = _native_or_refused(value_and_grad(EXP), value_and_grad(torch.exp))
    assert eager == "native" or names == _BROKEN_TOGETHER["torch.func checks"]
    assert _native_or_refused(value_and_grad(torch.compile(EXP, fullgraph=True)), value_and_grad(torch.exp)) in allowed
    assert _native_or_refused(lambda: value_and_grad(exported())(), value_and_grad(torch.exp)) in allowed
    for transform in (torch.func.hessian, lambda f: torch.func.vmap(torch.func.grad(f))):
        result = _native_or_refused(
            lambda t=transform: t(loss(EXP))(x.detach()), lambda t=transform: t(loss(torch.exp))(x)
        )
        assert result in allowed
    triple = lambda f: torch.func.jacfwd(torch.func.jacfwd(torch.func.grad(loss(f))))(x.detach())  # noqa: E731
    assert _native_or_refused(lambda: triple(EXP), lambda: triple(torch.exp)) == "refused"  # torch.func's zeros
    _kernel_ops._plain_dispatch_keys.cache_clear()


# sin, whose derivatives take a value its forward saves: its cosine.
SINE = declare_op(
    "op_factory_test::sine",
    "(Tensor x) -> Tensor",
    forward=lambda backend, x: (backend.xp.sin(x), backend.xp.cos(x)),
    backward=lambda backend, grad, cosine: grad * cosine,
    jvp=lambda backend, x_tangent, cosine: x_tangent * cosine,
    saved=("cosine",),
    batched=True,
)


def test_jacfwd_of_jacfwd_of_an_op_that_saves_values_is_the_op_s_refusal():
    """torch refused it first, with an error that blamed the op's jvp ("Function's jvp returned a gradient at
    position 1, but the corresponding forward output is not a differentiable Tensor")."""
    x = randn(4).detach()
    message = r"^sine: forward-over-forward derivatives \(jacfwd of jacfwd\) are not supported"
    with pytest.raises(RuntimeError, match=message):
        torch.func.jacfwd(torch.func.jacfwd(lambda x: SINE(x).sum()))(x)
    torch.testing.assert_close(torch.func.jacfwd(SINE)(x), torch.func.jacfwd(torch.sin)(x))


def test_forward_mode_over_vmap_of_an_op_that_saves_values_matches_native():
    """torch.func's vmap rule for a Function fails on a saved value's None tangent: it gets zeros instead."""
    x = torch.randn(3, 4, 5, dtype=F64)
    tangent = torch.randn_like(x)
    for transform in (lambda f: torch.func.jvp(torch.func.vmap(f), (x,), (tangent,)),
                      lambda f: torch.func.jacfwd(torch.func.vmap(f))(x[:, :2, :3])):  # fmt: skip
        torch.testing.assert_close(transform(SINE), transform(torch.sin))


def test_a_tensor_whose_storage_was_freed_is_refused_not_read_as_zeros():
    """As native refuses it (torch.fft.rfft2: "out of bounds for storage of size 0"); FSDP frees storages so."""
    x = torch.randn(3, 4, dtype=F64)
    x.untyped_storage().resize_(0)
    with pytest.raises(RuntimeError, match=r"a tensor of shape \(3, 4\) and dtype torch.float64 has no memory"):
        EVERY_TYPE(x)
    empty = torch.empty(0, 4, dtype=F64)
    assert EVERY_TYPE(empty).shape == (0, 4)


def test_reverse_over_forward_of_an_op_with_two_outputs_where_one_tangent_is_used():
    """The other output's cotangent is None, which its kernels get as zeros of its shape."""
    sincos = declare_op(
        "op_factory_test::sincos",
        "(Tensor x) -> (Tensor s, Tensor c)",
        forward=lambda backend, x: (backend.xp.sin(x), backend.xp.cos(x)),
        backward=lambda backend, grad_s, grad_c, x: grad_s * backend.xp.cos(x) - grad_c * backend.xp.sin(x),
        jvp=lambda backend, x_tangent, x: (backend.xp.cos(x) * x_tangent, -backend.xp.sin(x) * x_tangent),
        curvature=lambda backend, grad_s, grad_c, x_direction, x: -(grad_s * backend.xp.sin(x)
                                                                    + grad_c * backend.xp.cos(x)) * x_direction,
        batched=True,
    )  # fmt: skip
    x, t = torch.randn(4, dtype=F64), torch.randn(4, dtype=F64)

    def first_tangent(f):
        return torch.func.jacrev(lambda x: torch.func.jvp(f, (x,), (t,))[1][0])(x)

    torch.testing.assert_close(first_tangent(sincos), first_tangent(lambda x: (torch.sin(x), torch.cos(x))))


def test_the_gradient_asked_for_is_given_where_a_plain_argument_comes_before_the_tensors():
    """Each tensor input's gradient is looked up by its own edge: the plain argument has none."""
    scaled = declare_op(
        "op_factory_test::scaled_product",
        "(float s, Tensor x, Tensor w) -> Tensor",
        forward=lambda backend, s, x, w: s * x * w,
        backward=lambda backend, grad, s, x, w: (grad * s * w, grad * s * x),
    )
    x, w = randn(3), randn(3)
    (gx,) = torch.autograd.grad(scaled(2.0, x, w).sum(), x)
    torch.testing.assert_close(gx, 2.0 * w.detach())
