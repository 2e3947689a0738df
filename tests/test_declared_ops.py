"""Thirteen ops in one project, as a user gets there: the four starters, and nine ops declared from scratch.

The project is the blank starter's; the fft, conv2d and minimal starters join it by the generated README's
command (rendering into the project), which changes no file it already has but the exports, and appends
the op's section to the README. Then
nine ops of shapes that the blank starter's (data, a broadcasting weight, a float) does not take
are added by hand, each an op module (declared_ops/ops/<op>.py, which becomes src/own_ops/<op>.py),
its declaration into the contract (declared_ops/tests/<op>.py, which becomes tests/test_<op>.py)
and its benchmark script, as the blank starter's:
- log_cosh: one input and no hyperparameter, with every derivative kernel;
- fir_filter: a parameter (learnable taps) that does not broadcast with x, bilinear;
- local_max: int and int[] hyperparameters, a saved integer index, reverse mode only;
- mean_and_var: two outputs;
- normalize: a sum over the whole input, so no batch dims;
- masked_scale: an optional tensor input;
- solve_lower: a parameter first (a matrix), a bool that changes every derivative, the output that its
  derivatives take;
- gammainc: an input with no derivative (declared nondifferentiable), positive inputs;
- sparse_matmul: a Python object (a scipy.sparse operator, as an Opaque) held by its module.
declared_ops/ruff.toml lints those files here as the generated project lints them.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_template import REPO, add_op_command, assert_suite_passes, files, render, run

DECLARED_OPS = Path(__file__).resolve().parent / "declared_ops"

# Each op and its nn.Module.
OPS = {
    "log_cosh": "LogCosh",
    "fir_filter": "FirFilter",
    "local_max": "LocalMax",
    "mean_and_var": "MeanAndVar",
    "normalize": "Normalize",
    "masked_scale": "MaskedScale",
    "solve_lower": "SolveLower",
    "gammainc": "GammaInc",
    "sparse_matmul": "SparseLinear",
}
STARTERS = {
    "fft": ("bad_fft", "BadFFT"),
    "conv2d": ("scipy_conv2d", "ScipyConv2d"),
    "minimal": ("minimal_op", "MinimalOp"),
}


def add_op(project: Path, op: str, module: str, declared: Path = DECLARED_OPS) -> None:
    """What the user does: an op module, its tests, its benchmark, and the op exported from the package; from
    `declared`, this repository's declared_ops or an older copy of it."""
    package = project / "src" / "own_ops"
    shutil.copyfile(declared / "ops" / f"{op}.py", package / f"{op}.py")
    shutil.copyfile(declared / "tests" / f"{op}.py", project / "tests" / f"test_{op}.py")
    blank_benchmark = (project / "benchmarks" / "bench_my_op.py").read_text(encoding="utf-8")
    (project / "benchmarks" / f"bench_{op}.py").write_text(blank_benchmark.replace("my_op", op), encoding="utf-8")
    init = package / "__init__.py"
    source = init.read_text(encoding="utf-8")
    source = source.replace(
        "\n__all__ = [\n", f'\nfrom .{op} import {module}, {op}\n\n__all__ = [\n    "{module}",\n    "{op}",\n'
    )
    init.write_text(source, encoding="utf-8")


@pytest.mark.slow
def test_every_declared_op_in_one_project_passes_its_whole_suite(tmp_path):
    project = render(tmp_path, starter="blank", project_slug="own-ops", package_name="own_ops")
    command = add_op_command((project / "README.md").read_text(encoding="utf-8"))
    assert command[:2] == ["cookiecutter", str(REPO)]  # the template this project was rendered from
    for starter, (op, module) in STARTERS.items():
        before = {path: path.read_bytes() for path in files(project)}
        names = [f"starter={starter}", f"op_name={op}", f"class_name={module}"]
        result = run(sys.executable, "-m", *command, *names, cwd=project)
        assert f"Added own_ops.{op} and own_ops.{module}" in result.stdout  # not the next steps of a new project
        for path, content in before.items():  # nothing of the first ops or the project changes, but the exports
            if path.name == "README.md":  # and the README, which gains the op's section at its end
                section = f"\n\n## {op}\n\n{module}: "
                assert path.read_text(encoding="utf-8").startswith(content.decode().rstrip() + section), op
            elif path.name != "__init__.py":
                assert path.read_bytes() == content, path
    for op, module in OPS.items():
        add_op(project, op, module)
    # The user's pre-commit hooks sort the imports and __all__ and format; then the project is lint-clean.
    run(sys.executable, "-m", "ruff", "check", "--no-cache", "--fix", "--quiet", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "format", "--no-cache", "--quiet", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=project)
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    start = time.perf_counter()
    result = run(sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", cwd=project, env=env)
    print(f"the ops' suite: {result.stdout.splitlines()[-1]} ({time.perf_counter() - start:.0f} s)")
    assert_suite_passes(result, at_least=600)
    # The contract can fail: a jvp that is wrong only with unit_diagonal, as a user might write it, fails the
    # comparison with native on the sample that sets it.
    module = project / "src" / "own_ops" / "solve_lower.py"
    right = "_lower(backend.xp, matrix_tangent, unit_diagonal)"
    module.write_text(module.read_text(encoding="utf-8").replace(right, right.replace("unit_diagonal)", "False)")))
    check = "tests/test_solve_lower.py::TestContract::test_every_derivative_matches_native_on_every_sample"
    wrong = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", check],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 1, wrong.stdout
    assert re.search(r"1 failed, \d+ passed", wrong.stdout.splitlines()[-1]), wrong.stdout
    assert f"FAILED {check}[sample1-cpu]" in wrong.stdout
    for op in ("my_op", *(op for op, _ in STARTERS.values()), *OPS):
        assert f"PASSED tests/test_{op}.py::TestContract::" in result.stdout, f"no contract test of {op} ran"
