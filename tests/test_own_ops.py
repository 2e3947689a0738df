"""Ops that are not starters, written from the blank starter as its README says, pass their whole generated suite.

Each replaces the four array kernels of the op module and `native` in its tests, renames the
hyperparameter, and drops what the blank's forward saves; the declaration and the contract tests
stay as generated.
"""

import os
import re
import sys
from pathlib import Path

import pytest
from test_template import assert_suite_passes, render, run

# Each op: its hyperparameter's name, the kernels (with {op} for the op's name), `native`,
# the imports `native` needs, and the design tests of the blank that it drops, with why.
OWN_OPS = {
    "gaussian_smooth": {
        "hyperparameter": "sigma",
        "kernels": '''
def {op}_kernel(backend: ArrayBackend, x, weight, sigma):
    """weight * x smoothed along its last axis by a Gaussian of width sigma (zeros beyond the edges)."""
    return weight * _smooth(backend, x, sigma)


def {op}_backward_kernel(backend: ArrayBackend, grad, x, weight, sigma):
    # The smoothing is linear and symmetric, so it is its own adjoint.
    return _smooth(backend, grad * weight, sigma), grad * _smooth(backend, x, sigma)


def {op}_jvp_kernel(backend: ArrayBackend, x_tangent, weight_tangent, x, weight, sigma):
    return weight * _smooth(backend, x_tangent, sigma) + weight_tangent * _smooth(backend, x, sigma)


def {op}_curvature_kernel(backend: ArrayBackend, grad, x_direction, weight_direction, x, weight, sigma):
    return _smooth(backend, grad * weight_direction, sigma), grad * _smooth(backend, x_direction, sigma)


def _smooth(backend, a, sigma):
    return backend.ndimage.gaussian_filter1d(a, sigma, axis=-1, mode="constant")
''',
        "native": '''
def native(x, weight, sigma=1.0):
    """Smoothing as a matrix product: the filter applied to the identity gives its (symmetric) matrix."""
    matrix = scipy.ndimage.gaussian_filter1d(np.eye(x.shape[-1]), sigma, axis=-1, mode="constant")
    return weight * (x @ torch.from_numpy(matrix).to(x))
''',
        "imports": "import numpy as np\nimport scipy.ndimage\n",
        "drop": {"test_elementwise_on_any_shape": "it smooths along the last axis, so x needs one"},
    },
    "soft_plus": {
        "hyperparameter": "beta",
        "kernels": '''
def {op}_kernel(backend: ArrayBackend, x, weight, beta):
    """weight * softplus(beta * x) / beta."""
    return weight * backend.xp.logaddexp(0, beta * x) / beta


def {op}_backward_kernel(backend: ArrayBackend, grad, x, weight, beta):
    return grad * weight * backend.special.expit(beta * x), grad * backend.xp.logaddexp(0, beta * x) / beta


def {op}_jvp_kernel(backend: ArrayBackend, x_tangent, weight_tangent, x, weight, beta):
    slope = backend.special.expit(beta * x)
    return weight * slope * x_tangent + backend.xp.logaddexp(0, beta * x) / beta * weight_tangent


def {op}_curvature_kernel(backend: ArrayBackend, grad, x_direction, weight_direction, x, weight, beta):
    slope = backend.special.expit(beta * x)
    bend = beta * slope * (1 - slope)
    return grad * (slope * weight_direction + weight * bend * x_direction), grad * slope * x_direction
''',
        "native": """
def native(x, weight, beta=1.0):
    return weight * torch.nn.functional.softplus(x, beta=beta, threshold=1e9)
""",
        "imports": "",
        "drop": {},
    },
    "scaled_erf": {
        "hyperparameter": "scale",
        "kernels": '''
def {op}_kernel(backend: ArrayBackend, x, weight, scale):
    """weight * erf(scale * x)."""
    return weight * backend.special.erf(scale * x)


def {op}_backward_kernel(backend: ArrayBackend, grad, x, weight, scale):
    slope = _slope(backend, x, scale)
    return grad * weight * slope, grad * backend.special.erf(scale * x)


def {op}_jvp_kernel(backend: ArrayBackend, x_tangent, weight_tangent, x, weight, scale):
    return weight * _slope(backend, x, scale) * x_tangent + backend.special.erf(scale * x) * weight_tangent


def {op}_curvature_kernel(backend: ArrayBackend, grad, x_direction, weight_direction, x, weight, scale):
    slope = _slope(backend, x, scale)
    bend = -2 * scale**2 * x * slope
    return grad * (slope * weight_direction + weight * bend * x_direction), grad * slope * x_direction


def _slope(backend, x, scale):
    """d/dx erf(scale * x). 2 / sqrt(pi) as a Python float: a NumPy float64 scalar would promote float32."""
    return scale * 1.1283791670955126 * backend.xp.exp(-((scale * x) ** 2))
''',
        "native": """
def native(x, weight, scale=1.0):
    return weight * torch.erf(scale * x)
""",
        "imports": "",
        "drop": {},
    },
}


# The blank's design tests that every op above drops: they test its saved phase.
BLANK_DESIGN = {
    "test_opcheck_derivative_ops": "the derivative ops take the saved values among their arguments",
    "test_saves_what_the_backward_uses_as_native_does": "these ops' backward uses x itself",
}


def write_own_op(project: Path, op: str, spec: dict) -> None:
    """What the user does: new kernels and `native`, the hyperparameter renamed, differing design tests dropped."""
    module, tests = project / "src" / "own_ops" / f"{op}.py", project / "tests" / f"test_{op}.py"
    source = module.read_text(encoding="utf-8")
    start, end = source.index(f"def {op}_kernel("), source.index("# ---", source.index(f"def {op}_kernel("))
    source = source[:start] + spec["kernels"].format(op=op).lstrip() + "\n\n" + source[end:]
    # Its forward saves nothing and gives one output of the broadcast shape: the blank's phase and fake go.
    source = re.sub(r"\ndef _fake\(.*?\n\n\n", "\n", source, flags=re.DOTALL)
    source = re.sub(r"\n    (saved|fake)=[^\n]*", "", source)
    module.write_text(source.replace("frequency", spec["hyperparameter"]), encoding="utf-8")

    test_source = tests.read_text(encoding="utf-8")
    start, end = test_source.index("def native("), test_source.index("def inputs(")
    test_source = test_source[:start] + spec["native"].lstrip() + "\n\n" + test_source[end:]
    test_source = test_source.replace("import pytest\n", spec["imports"] + "import pytest\n", 1)
    for name in {**spec["drop"], **BLANK_DESIGN}:
        test_source = re.sub(rf"\n\n(@pytest[^\n]*\n)*def {name}\(.*?(?=\n\n\n|\Z)", "", test_source, flags=re.DOTALL)
    tests.write_text(test_source.replace("frequency", spec["hyperparameter"]), encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("op", list(OWN_OPS))
def test_an_own_op_from_the_blank_starter_passes_its_whole_suite(op, tmp_path):
    names = {"op_name": op, "class_name": "".join(word.capitalize() for word in op.split("_"))}
    project = render(tmp_path, starter="blank", project_slug="own-ops", package_name="own_ops", **names)
    write_own_op(project, op, OWN_OPS[op])
    # The user's pre-commit hooks sort the imports they added and format; then the project is lint-clean.
    run(sys.executable, "-m", "ruff", "check", "--no-cache", "--fix", "--quiet", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "format", "--no-cache", "--quiet", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=project)
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, env=env)
    assert_suite_passes(result, at_least=50)
