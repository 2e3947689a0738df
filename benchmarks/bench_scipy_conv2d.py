"""scipy_conv2d against native torch, forward plus backward, on the sizes its tests declare (`benchmark_samples`).

python -m benchmarks.bench_scipy_conv2d [--device cuda]
"""

from torch_scipy_op.testing.benchmark import main

from tests.test_scipy_conv2d import TestContract

if __name__ == "__main__":
    main(__doc__, TestContract())
