"""DTensor inputs: an op declared `batched=True` runs on each process's shard, as torch's local_map runs a function.

A batched op computes each slice along a batch dim on its own, so data sharded on batch dims
(`Shard(d)`) or replicated, with parameters replicated, needs no communication in the forward:
each process runs the op on its local tensors, and the outputs are sharded as the data is, or
replicated. In the backward, a replicated parameter's gradient over sharded data is a partial
sum on each process (`Partial()`), which is what native ops give. One-dimensional meshes only.
Other ops, and other placements, are refused with what to do instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from ._op_factory import DeclaredOp

try:
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

    DTENSOR: tuple[type, ...] = (DTensor,)
except ImportError:  # a torch built without torch.distributed: no DTensor can reach an op
    DTENSOR = ()


def is_dtensor(t: Any) -> bool:
    return isinstance(t, DTENSOR)


def run_sharded(declared: DeclaredOp, args: tuple) -> Any:
    """The op on DTensor arguments: per shard, with native's placements, or a clear refusal."""
    tensors: list[tuple[str, Any]] = [
        (a.name, t) for a, t in zip(declared.arguments, args, strict=True) if isinstance(t, torch.Tensor)
    ]
    name = declared.name
    if not declared.batched:
        _refuse(name, "it is not declared batched=True, so its kernels may mix the samples of a batch")
    if not all(is_dtensor(t) for _, t in tensors):
        plain = next(n for n, t in tensors if not is_dtensor(t))
        _refuse(name, f"{plain} is a torch.Tensor among DTensors; make every tensor argument a DTensor")
    mesh = tensors[0][1].device_mesh
    if mesh.ndim != 1 or any(t.device_mesh != mesh for _, t in tensors):
        _refuse(name, "its DTensor arguments are not all on one one-dimensional mesh, the only kind it takes")
    from_right = _data_sharding(declared, tensors)
    # Shards may be uneven (7 rows over 2 processes): the outputs' global shapes are the fake's for the whole.
    shapes = None if from_right is None else _sharded_outputs(declared, args, from_right)
    # The gradient of what is replicated over sharded data: each process's part of the sum, as native's.
    local = [
        t.to_local(grad_placements=[Partial()] if from_right is not None and t.placements[0].is_replicate() else None)
        if is_dtensor(t)
        else t
        for t in args
    ]
    outputs = declared(*local)
    single = not isinstance(outputs, tuple)
    wrapped = [_global(o, mesh, shapes, i) for i, o in enumerate((outputs,) if single else outputs)]
    return wrapped[0] if single else tuple(wrapped)


def _global(local: torch.Tensor, mesh, shapes: tuple[int, list[torch.Size]] | None, i: int) -> Any:
    """Output `i` as a DTensor: replicated, or sharded on dim `shapes[0]` with the global shape `shapes[1][i]`."""
    if shapes is None:
        return DTensor.from_local(local, mesh, [Replicate()], run_check=False)
    dim, whole = shapes
    return DTensor.from_local(local, mesh, [Shard(dim)], run_check=False, shape=whole[i], stride=_contiguous(whole[i]))


def _data_sharding(declared: DeclaredOp, tensors: list) -> int | None:
    """The dim the data is sharded on, counted from the right (-1 is the last dim), or None where it is replicated.

    Replicated data may join sharded data where it broadcasts over the sharded dim (it has size 1 there, or
    not that many dims), as a weight over the batch does.
    """
    dims, replicated = set(), []
    for name, t in tensors:
        (placement,) = t.placements
        if name in declared.parameters:
            if not placement.is_replicate():
                _refuse(declared.name, f"its parameter {name} is {placement}; replicate parameters (Replicate())")
        elif placement.is_shard():
            dims.add(placement.dim - t.dim() if placement.dim >= 0 else placement.dim)
        elif placement.is_replicate():
            replicated.append((name, t))
        else:
            _refuse(declared.name, f"{name} is {placement}; shard data on a batch dim (Shard(0)) or replicate it")
    if len(dims) > 1:
        _refuse(declared.name, "its data arguments are sharded on different dims; shard them on one batch dim")
    from_right = next(iter(dims), None)
    for name, t in replicated:
        if from_right is not None and t.dim() >= -from_right and t.shape[from_right] != 1:
            _refuse(declared.name, f"{name} is replicated with the dim that the other data is sharded on; shard it too")
    return from_right


def _sharded_outputs(declared: DeclaredOp, args: tuple, from_right: int) -> tuple[int, list[torch.Size]]:
    """The outputs' sharded dim (they lead with the batch dims), and their global shapes, once the sharded dim is
    checked to be a batch dim: the slices along it and the dims before are inputs the op takes (its check and fake),
    whose outputs are the slices of the whole's.

    Otherwise the op would compute each shard as an input of its own, which it is not: refused.
    """
    data = {a.name for a in declared.arguments if a.is_tensor and a.name not in declared.parameters}
    whole = [torch.empty(t.shape, dtype=t.dtype, device="meta") if is_dtensor(t) else t for t in args]
    batch = torch.broadcast_shapes(*(w.shape for a, w in zip(declared.arguments, whole, strict=True) if a.name in data))
    count = len(batch) + from_right + 1
    sample = [
        w[(0,) * (w.dim() + from_right + 1)] if a.name in data else w
        for a, w in zip(declared.arguments, whole, strict=True)
    ]
    n_outputs = len(declared.outputs)
    try:
        if declared.check is not None:
            declared.check(*sample)
        outputs = [shape for shape, _ in declared.forward_check.expected(whole)[:n_outputs]]
        sample_outputs = [shape for shape, _ in declared.forward_check.expected(sample)[:n_outputs]]
        taken = all(o == (*batch[:count], *s) for o, s in zip(outputs, sample_outputs, strict=True))
    except Exception:  # the op refuses a slice as an input of its own
        taken = False
    if not taken:
        name, t = next((a.name, t) for a, t in zip(declared.arguments, args, strict=True) if a.name in data)
        dim = t.dim() + from_right
        _refuse(declared.name, f"{name} of shape {tuple(t.shape)} is sharded on dim {dim}, which is not a batch dim")
    if any(n is None for shape in outputs for n in shape):
        _refuse(declared.name, "an output's size depends on the data, so no process knows the whole's shape")
    return count - 1, [torch.Size(cast(tuple[int, ...], shape)) for shape in outputs]


def _contiguous(shape: torch.Size) -> tuple[int, ...]:
    return torch.empty(shape, device="meta").stride()


def _refuse(op: str, why: str) -> None:
    raise ValueError(
        f"{op}: DTensor arguments are taken only by batched ops, with data sharded on a batch dim (Shard(0)) or "
        f"replicated and parameters replicated, on one one-dimensional mesh; here {why}. Call it on "
        "full_tensor() of each argument, or wrap your own function in torch.distributed.tensor.experimental.local_map"
    )
