"""sparse_matmul: a Python object (a scipy.sparse operator) as an argument, tested against a dense torch version."""

import copy
import gc
import pickle

import scipy.sparse
import torch
from torch_scipy_op import Opaque
from torch_scipy_op.testing import OpContract

from own_ops import SparseLinear, sparse_matmul


def operator(m, n, seed=0):
    return Opaque(scipy.sparse.random_array((m, n), density=0.4, format="csr", rng=seed))


def native(operator, x):
    return x @ torch.from_numpy(operator.value.toarray()).to(x).T


class TestContract(OpContract):
    op = staticmethod(sparse_matmul)
    native = staticmethod(native)
    samples = (
        {"operator": operator(3, 4), "x": (2, 4)},
        {"operator": operator(5, 5, seed=1), "x": (3, 2, 5)},
        {"operator": operator(1, 6, seed=2), "x": (6,)},
    )
    bad_inputs = (
        ({"operator": operator(3, 4), "x": (2, 5)}, ValueError, r"x must have shape \(\.\.\., 4\), got \(2, 5\)"),
        ({"operator": scipy.sparse.eye_array(4), "x": (4,)}, TypeError, "operator must be a torch_scipy_op.Opaque"),
    )
    benchmark_samples = ({"operator": operator(1000, 1000), "x": (64, 1000)},)

    @staticmethod
    def module():
        module = SparseLinear(operator(6, 8).value)
        return module, (4, 8), lambda module, x: native(module.operator, x) + module.bias


def test_a_module_keeps_its_operator_through_deepcopy_and_pickling_and_not_in_its_state_dict():
    module, x = SparseLinear(operator(3, 4).value, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    for copied in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        torch.testing.assert_close(copied(x), module(x))
    assert list(module.state_dict()) == ["bias"]


def _sharded_batch(rank, store):
    torch.distributed.init_process_group("gloo", store=torch.distributed.FileStore(store, 2), rank=rank, world_size=2)
    try:
        _compare_sharded_batch()
        # Its DTensors, mesh and graph freed now, not after gloo is torn down, where their destructors can
        # abort the process.
        gc.collect()
    finally:
        torch.distributed.destroy_process_group()


def _compare_sharded_batch():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    a, mesh = operator(3, 4), init_device_mesh("cpu", (2,))
    x = distribute_tensor(torch.randn(6, 4, dtype=torch.float64), mesh, [Shard(0)])
    dense = distribute_tensor(torch.from_numpy(a.value.toarray()), mesh, [Replicate()])
    ours, theirs = x.detach().requires_grad_(), x.detach().requires_grad_()
    y, expected = sparse_matmul(a, ours), theirs @ dense.T
    assert y.placements == expected.placements == (Shard(0),)
    torch.testing.assert_close(y.full_tensor(), expected.full_tensor())
    y.square().sum().backward(), expected.square().sum().backward()
    torch.testing.assert_close(ours.grad.full_tensor(), theirs.grad.full_tensor())


def test_a_batch_sharded_over_two_processes_as_native(tmp_path):
    """x a DTensor sharded on its batch (Shard(0)) on a two-process gloo mesh: sharded y, as native's."""
    torch.multiprocessing.spawn(_sharded_batch, args=(str(tmp_path / "store"),), nprocs=2)
