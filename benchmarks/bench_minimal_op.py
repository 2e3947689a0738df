"""minimal_op against native torch, forward plus backward, on the sizes its tests declare (`benchmark_samples`).

python -m benchmarks.bench_minimal_op [--device cuda]
"""

from torch_scipy_op.testing.benchmark import main

from tests.test_minimal_op import TestContract

if __name__ == "__main__":
    main(__doc__, TestContract())
