"""This repository's own benchmark scripts run: each op's runs in its contract (OpContract.test_benchmark_runs)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "command",
    [["benchmarks.bench_reference", "--tiny"], ["benchmarks.breakdown", "--size", "8", "--rounds", "1"]],
    ids=["bench_reference", "breakdown"],
)
def test_benchmark_script_runs(command):
    result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "| geometric mean |" in result.stdout or "| bad_fft |" in result.stdout
