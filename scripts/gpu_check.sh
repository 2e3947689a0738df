#!/usr/bin/env bash
# On a CUDA machine with CuPy: the CUDA tests, then forward + backward timings of
# native torch, the ops on CuPy and the ops' host round trip, side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

"$python" -c "import torch, cupy
assert torch.cuda.is_available(), 'no CUDA GPU'
print('torch', torch.__version__, '| CuPy', cupy.__version__, '|', torch.cuda.get_device_name())"
"$python" -m pytest -m cuda -p no:cacheprovider tests/test_boundary.py tests/test_bad_fft.py tests/test_scipy_conv2d.py tests/test_my_op.py
"$python" -m benchmarks.bench_reference --device cuda
