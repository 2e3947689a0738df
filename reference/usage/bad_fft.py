import torch

from reference import BadFFT
from reference.bad_fft import bad_fft

x = torch.randn(8, 64, 64, requires_grad=True)  # (..., H, W)
y = bad_fft(x)
assert y.shape == (8, 64, 33)
y.sum().backward()

model = torch.compile(torch.nn.Sequential(BadFFT(), torch.nn.Flatten()), fullgraph=True)
per_sample = torch.func.vmap(bad_fft)  # batching rules included
