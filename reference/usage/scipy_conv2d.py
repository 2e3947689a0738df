import torch

from reference import ScipyConv2d
from reference.scipy_conv2d import scipy_conv2d

images = torch.randn(8, 64, 64, requires_grad=True)  # (..., H, W)
weight = torch.randn(5, 5, requires_grad=True)
bias = torch.zeros(1, requires_grad=True)
out = scipy_conv2d(images, weight, bias)
assert out.shape == (8, 60, 60)
out.sum().backward()  # gradients for images, weight and bias

layer = ScipyConv2d(5, 5)  # Parameters `weight` (5, 5) and `bias` (1,)
model = torch.compile(torch.nn.Sequential(layer, torch.nn.ReLU()), fullgraph=True)
per_sample = torch.func.vmap(scipy_conv2d)  # batching rules included
