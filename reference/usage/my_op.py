import torch

from reference import MyOp
from reference.my_op import my_op

x = torch.randn(8, 64, 64, requires_grad=True)  # any shape
weight = torch.ones(64, requires_grad=True)  # broadcasts over x's batch
y = my_op(x, weight, frequency=0.5)
assert y.shape == x.shape
y.sum().backward()  # gradients for x and weight

layer = MyOp(64, frequency=0.5)  # Parameter `weight` (64,)
model = torch.compile(torch.nn.Sequential(layer, torch.nn.Flatten()), fullgraph=True)
per_sample = torch.func.vmap(my_op)  # batching rules included
