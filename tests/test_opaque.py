"""Python objects as op arguments (`Opaque`): a scipy.sparse operator, on every path that reaches the op.

On torch with opaque objects (2.13 and later) the object travels through the dispatcher,
torch.compile, torch.func and export; on older torch, plain eager calls carry it and the rest
refuse with an error that names the torch release that supports it. The declared-ops project's
sparse_matmul runs the whole contract with such an argument.
"""

import copy
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.sparse
import torch
import torch._dynamo.testing
from torch_scipy_op import Opaque, declare_op
from torch_scipy_op._opaque import OPAQUE_SINCE, OPAQUE_SUPPORTED

REPO = Path(__file__).resolve().parents[1]
needs_opaque = pytest.mark.skipif(not OPAQUE_SUPPORTED, reason=f"opaque objects came with torch {OPAQUE_SINCE}")
without_opaque = pytest.mark.skipif(OPAQUE_SUPPORTED, reason="this torch has opaque objects")


def _apply(operator, x):
    return (operator @ x.reshape(-1, x.shape[-1]).T).T.reshape(*x.shape[:-1], operator.shape[0])


def _fake(operator, x):
    return x.new_empty((*x.shape[:-1], operator.shape[0]))


APPLIED = declare_op(
    "opaque_test::applied",
    "(Opaque operator, Tensor x) -> Tensor",
    forward=lambda backend, operator, x: _apply(operator, x),
    backward=lambda backend, grad, operator: _apply(operator.T, grad),
    batched=True,
    fake=_fake,
)


@APPLIED.public
def applied(operator: Opaque, x: torch.Tensor) -> torch.Tensor:
    return APPLIED(operator, x)


class Applied(torch.nn.Module):
    def __init__(self, operator):
        super().__init__()
        self.operator = Opaque(operator)

    def forward(self, x):
        return applied(self.operator, x)


def operator(m=3, n=4, seed=0):
    return Opaque(scipy.sparse.random(m, n, density=0.5, format="csr", random_state=seed))


def dense(operator, x):
    return x @ torch.from_numpy(operator.value.toarray()).T


X = torch.arange(8.0, dtype=torch.float64).reshape(2, 4)


def test_eager_values_and_gradients_are_the_dense_versions():
    a, x = operator(), X.clone().requires_grad_()
    torch.testing.assert_close(applied(a, x), dense(a, X))
    (grad,) = torch.autograd.grad(applied(a, x).sum(), x)
    torch.testing.assert_close(grad, torch.ones(2, 3, dtype=torch.float64) @ torch.from_numpy(a.value.toarray()))


def test_an_object_that_is_not_wrapped_is_refused_with_what_to_do():
    with pytest.raises(TypeError, match=r"applied: operator must be a torch_scipy_op.Opaque, got csr_matrix: pass"):
        applied(operator().value, X)


def test_a_module_keeps_its_object_through_deepcopy_and_pickling_and_not_in_its_state_dict():
    module = Applied(operator().value)
    for copied in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        torch.testing.assert_close(copied(X), module(X))
    assert dict(module.state_dict()) == {}


@needs_opaque
def test_through_torch_ops_and_torch_func():
    a = operator()
    torch.testing.assert_close(torch.ops.opaque_test.applied(a, X), dense(a, X))
    torch.testing.assert_close(torch.func.vmap(applied, in_dims=(None, 0))(a, X), dense(a, X))
    grad = torch.func.grad(lambda x: applied(a, x).square().sum())(X)
    torch.testing.assert_close(grad, torch.func.grad(lambda x: dense(a, x).square().sum())(X))


@needs_opaque
def test_compiled_code_runs_for_a_new_object_of_the_same_kind_and_compiles_again_for_another_kind():
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(applied, backend=counter, fullgraph=True)
    for seed in (0, 1):  # two matrices of one kind: one graph, each matrix's numbers
        a = operator(seed=seed)
        torch.testing.assert_close(compiled(a, X), dense(a, X))
    assert counter.frame_count == 1
    taller = operator(m=5)
    torch.testing.assert_close(compiled(taller, X), dense(taller, X))  # a shape the fake reads
    assert counter.frame_count == 2


@needs_opaque
def test_an_exported_module_carries_its_object_to_a_fresh_process(tmp_path):
    a = operator()
    program = torch.export.export(Applied(a.value), (X,))
    torch.testing.assert_close(program.module()(X), dense(a, X))
    path = tmp_path / "applied.pt2"
    torch.export.save(program, path)
    code = (
        "import sys, torch, tests.test_opaque as t; "
        "y = torch.export.load(sys.argv[1]).module()(t.X); torch.save(y, sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "y.pt")], cwd=REPO, check=True)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), dense(a, X))


@needs_opaque
def test_an_exported_program_takes_an_object_as_an_input():
    class Takes(torch.nn.Module):
        def forward(self, operator, x):
            return applied(operator, x)

    program = torch.export.export(Takes(), (operator(), X))
    other = operator(seed=1)
    torch.testing.assert_close(program.module()(other, X), dense(other, X))


@without_opaque
@pytest.mark.parametrize(
    "path",
    [
        lambda a: torch.compile(applied, fullgraph=True)(a, X),
        lambda a: torch.export.export(Applied(a.value), (X,)),
        lambda a: torch.func.vmap(applied, in_dims=(None, 0))(a, X),
        lambda a: torch.func.grad(lambda x: applied(a, x).sum())(X),
    ],
    ids=["compile", "export", "vmap", "grad"],
)
def test_beyond_eager_code_older_torch_refuses_and_names_the_release_that_supports_it(path):
    with pytest.raises(Exception, match=rf"applied: an Opaque argument under .* needs torch {OPAQUE_SINCE} or newer"):
        path(operator())
