import torch

from reference import MinimalOp
from reference.minimal_op import minimal_op

x = torch.randn(8, 64, 64, requires_grad=True)  # any shape
y = minimal_op(x)
assert y.shape == x.shape
y.sum().backward()

model = torch.compile(torch.nn.Sequential(torch.nn.Linear(64, 64), MinimalOp()), fullgraph=True)
per_sample = torch.func.vmap(minimal_op)  # batching rules included
