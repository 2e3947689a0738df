"""Ops declared from scratch with `declare_op`, added to one blank project as a user adds them, pass its whole suite.

Each op module (declared_ops/ops/<op>.py, which becomes src/own_ops/<op>.py) and its tests
(declared_ops/tests/<op>.py, which become tests/test_<op>.py) take a shape that the blank
starter's (data, a broadcasting weight, a float) does not:
- log_cosh: one input and no hyperparameter, with every derivative kernel;
- fir_filter: a parameter (learnable taps) that does not broadcast with x, bilinear;
- local_max: int and int[] hyperparameters, a saved integer index, reverse mode only;
- mean_and_var: two outputs;
- normalize: a sum over the whole input, so no batch dims;
- masked_scale: an optional tensor input.
declared_ops/ruff.toml lints those files here as the generated project lints them.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
from test_template import assert_suite_passes, render, run

DECLARED_OPS = Path(__file__).resolve().parent / "declared_ops"

# Each op and its nn.Module.
OPS = {
    "log_cosh": "LogCosh",
    "fir_filter": "FirFilter",
    "local_max": "LocalMax",
    "mean_and_var": "MeanAndVar",
    "normalize": "Normalize",
    "masked_scale": "MaskedScale",
}


def add_op(project: Path, op: str, module: str) -> None:
    """What the user does: an op module, its tests, and the op exported from the package."""
    package = project / "src" / "own_ops"
    shutil.copyfile(DECLARED_OPS / "ops" / f"{op}.py", package / f"{op}.py")
    shutil.copyfile(DECLARED_OPS / "tests" / f"{op}.py", project / "tests" / f"test_{op}.py")
    init = package / "__init__.py"
    source = init.read_text(encoding="utf-8")
    source = source.replace(
        "\n__all__ = [\n", f'\nfrom .{op} import {module}, {op}\n\n__all__ = [\n    "{module}",\n    "{op}",\n'
    )
    init.write_text(source, encoding="utf-8")


@pytest.mark.slow
def test_ops_declared_in_a_blank_project_pass_its_whole_suite(tmp_path):
    project = render(tmp_path, starter="blank", project_slug="own-ops", package_name="own_ops")
    for op, module in OPS.items():
        add_op(project, op, module)
    # The user's pre-commit hooks sort the imports and __all__ and format; then the project is lint-clean.
    run(sys.executable, "-m", "ruff", "check", "--no-cache", "--fix", "--quiet", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "format", "--no-cache", "--quiet", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=project)
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    result = run(sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", cwd=project, env=env)
    assert_suite_passes(result, at_least=150)
    for op in ("my_op", *OPS):
        assert f"PASSED tests/test_{op}.py::" in result.stdout, f"no test of {op} ran"
