"""This repository's own benchmark scripts run: each op's runs in its contract (OpContract.test_benchmark_runs)."""

import subprocess
import sys

import pytest
import torch
from torch_scipy_op.testing.benchmark import median_ms, torch_threads


@pytest.mark.parametrize(
    "command",
    [["benchmarks.bench_reference", "--tiny"], ["benchmarks.breakdown", "--size", "8", "--rounds", "1"]],
    ids=["bench_reference", "breakdown"],
)
def test_benchmark_script_runs(command):
    result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "| geometric mean |" in result.stdout or "| bad_fft |" in result.stdout


def test_a_step_is_timed_at_the_thread_count_the_process_has():
    """torch.utils.benchmark.Timer times at one thread unless told otherwise: the default thread count's
    numbers were one thread's."""
    seen = []
    with torch_threads(2):
        median_ms(lambda inputs, grads: seen.append(torch.get_num_threads()), (), [], min_run_time=1e-4)
    assert set(seen) == {2}
