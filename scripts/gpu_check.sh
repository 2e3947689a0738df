#!/usr/bin/env bash
# On a CUDA machine with CuPy: the CUDA tests, then forward + backward timings of
# native torch, the ops on CuPy and the ops' host round trip, side by side, and the
# layer breakdown of the fixed cost on CUDA.
# With BEFORE=<a checkout of an earlier commit>, that commit's timings follow, on the same machine.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

"$python" -c "import torch, cupy, numpy, scipy
assert torch.cuda.is_available(), 'no CUDA GPU'
print('torch', torch.__version__, '| CuPy', cupy.__version__, '| numpy', numpy.__version__, '| scipy', scipy.__version__, '|', torch.cuda.get_device_name())"
timeout "${TEST_TIMEOUT:-240}" "$python" -m pytest -q -k cuda -p no:cacheprovider \
    tests/test_boundary.py tests/test_bad_fft.py tests/test_scipy_conv2d.py tests/test_my_op.py tests/test_minimal_op.py
timeout "${BENCH_TIMEOUT:-150}" "$python" -m benchmarks.bench_reference --device cuda --min-run-time "${MIN_RUN_TIME:-0.2}"
timeout "${BENCH_TIMEOUT:-150}" "$python" -m benchmarks.breakdown --device cuda --rounds 3
if [ -n "${BEFORE:-}" ]; then
    echo "# The earlier commit, $BEFORE"
    (cd "$BEFORE" && timeout "${BENCH_TIMEOUT:-150}" "$python" -m benchmarks.bench_reference --device cuda \
        --min-run-time "${MIN_RUN_TIME:-0.2}")
fi
