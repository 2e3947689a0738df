"""The package as users get it: its public API, the README's plain-script example, `check`, and a testing
module that changes nothing outside the contract."""

import re
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
import torch
import torch_scipy_op
import torch_scipy_op.testing
from packaging.requirements import Requirement
from packaging.version import Version
from torch_scipy_op.testing import check

from reference.bad_fft import bad_fft
from reference.my_op import my_op

from tests.test_template import library_requirement

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Without the template") :]
    return re.search(r"^```python\n(.*?)^```", section, re.M | re.S).group(1)


def test_the_public_api_is_what_all_lists():
    for module in (torch_scipy_op, torch_scipy_op.testing):
        assert all(hasattr(module, name) for name in module.__all__), module
        assert all(not name.startswith("_") or name == "__version__" for name in module.__all__)
    assert {"declare_op", "ArrayBackend", "host_round_trip", "float_argument", "check_image"} <= set(
        torch_scipy_op.__all__
    )
    assert {"OpContract", "assert_matches", "randn", "tolerances", "check"} <= set(torch_scipy_op.testing.__all__)


@pytest.mark.parametrize("module", ["torch_scipy_op", "torch_scipy_op.testing"])
def test_importing_the_package_says_nothing(module):
    # Warnings as errors, and torch's own log (a deprecated private name logs a warning there, not in warnings).
    command = [sys.executable, "-W", "error", "-c", f"import {module}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_generated_projects_admit_this_checkout():
    """The requirement generated projects declare admits the version of the package installed from here."""
    requirement = Requirement(library_requirement("testing"))
    assert requirement.name == "torch-scipy-op"
    assert requirement.extras == {"testing"}
    assert requirement.specifier.contains(torch_scipy_op.__version__, prereleases=True), torch_scipy_op.__version__
    # A bound that names a development release admits pre-releases (0.1.1rc1) for every user: fine before the first
    # release, where builds from a checkout are all there is; a release must require releases.
    if not Version(torch_scipy_op.__version__).is_devrelease:
        assert not any(Version(s.version).is_prerelease for s in requirement.specifier), requirement


def test_the_readme_example_is_a_short_plain_script():
    example = readme_example()
    assert len(example.splitlines()) < 30
    assert "pytest" not in example


@pytest.mark.slow
def test_the_readme_example_runs_in_a_fresh_venv_after_installing_the_checkout(tmp_path):
    """`pip install <checkout>[testing]` in a venv of its own (with this interpreter's torch release, from the
    registry), then the example as a script."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}"], check=True, timeout=600)
    subprocess.run([*pip, f"{REPO}[testing]"], check=True, timeout=600)
    script = tmp_path / "example.py"
    script.write_text(readme_example(), encoding="utf-8")
    result = subprocess.run([python, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    where = subprocess.run(
        [python, "-c", "import torch_scipy_op.testing; print(torch_scipy_op.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv")


def native_my_op(x, weight, frequency=1.0):
    return weight * torch.sin(frequency * x)


def test_check_runs_the_core_checks_without_pytest():
    ran = check(my_op, native_my_op, [{"x": (4, 6), "weight": (6,), "frequency": 0.7}])
    assert ran[:2] == ["values and gradients, sample 0, torch.float32", "values and gradients, sample 0, torch.float64"]
    assert {"gradcheck", "vmap over x", "vmap over weight", "vmap over all"} <= set(ran)
    assert ran[-2:] == ["torch.compile, static shapes", "torch.compile, dynamic shapes"]


def test_check_raises_on_the_first_failure_and_names_it():
    def wrong(x, weight, frequency=1.0):
        return weight * torch.sin(frequency * x) + 1e-3

    with pytest.raises(AssertionError, match=r"^my_op: values and gradients, sample 0, torch.float32: .*output 0: "):
        check(my_op, wrong, [{"x": (4, 6), "weight": (6,)}])

    def wrong_gradient(x, weight, frequency=1.0):  # the same values, the gradient of x doubled
        return weight * torch.sin(frequency * (2 * x - x.detach()))

    with pytest.raises(AssertionError, match=r"values and gradients, .*the gradient of argument 0: Tensor-likes"):
        check(my_op, wrong_gradient, [{"x": (4, 6), "weight": (6,)}])


def test_check_refuses_what_it_cannot_check():
    with pytest.raises(TypeError, match="check: op must be a function made by declare_op, got <built-in"):
        check(torch.sin, torch.sin, [{"x": (3,)}])
    with pytest.raises(ValueError, match="check: samples must hold at least one sample"):
        check(bad_fft, bad_fft, [])


def test_the_testing_module_changes_nothing_outside_the_contract(tmp_path):
    """A project's other tests run as if torch_scipy_op.testing were not there: no autouse fixture, no
    `device` fixture, no setting changed, strict checks off; the contract's checks get theirs."""
    (tmp_path / "test_other.py").write_text(
        textwrap.dedent(
            """
            import pytest
            import torch._inductor.config

            from reference.my_op import my_op
            from torch_scipy_op._checks import strict
            from torch_scipy_op.testing import OpContract

            CACHE = torch._inductor.config.fx_graph_cache


            class TestContract(OpContract):
                op = staticmethod(my_op)
                native = staticmethod(lambda x, weight, frequency=1.0: weight * torch.sin(frequency * x))
                samples = ({"x": (4, 6), "weight": (6,)},)

                def test_its_own_settings(self, device):
                    assert strict() and not torch._inductor.config.fx_graph_cache and device == "cpu"


            def test_nothing_else_changes(request):
                assert not strict()
                assert torch._inductor.config.fx_graph_cache == CACHE
                with pytest.raises(pytest.FixtureLookupError):
                    request.getfixturevalue("device")
            """
        ),
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "own_settings or nothing_else"]
    command += ["--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path / "test_other.py")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert re.search(r"^2 passed", result.stdout.splitlines()[-1]), result.stdout


def test_a_contract_outside_the_template_skips_the_benchmark_script_it_does_not_have(tmp_path):
    """The README's "Without the template": a TestContract with no benchmarks/bench_<op>.py beside it."""
    (tmp_path / "test_square.py").write_text(
        textwrap.dedent(
            """
            from torch_scipy_op import declare_op
            from torch_scipy_op.testing import OpContract

            SQUARE = declare_op(
                "outside_template::square",
                "(Tensor x) -> Tensor",
                forward=lambda backend, x: x * x,
                backward=lambda backend, grad, x: 2 * grad * x,
            )


            @SQUARE.public
            def square(x):
                return SQUARE(x)


            class TestContract(OpContract):
                op = staticmethod(square)
                native = staticmethod(lambda x: x * x)
                samples = ({"x": (3,)},)
            """
        ),
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "benchmark_runs"]
    command += ["--rootdir", str(tmp_path), "-c", "/dev/null", "test_square.py"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "no benchmarks/bench_square.py, the template's benchmark script, to run" in result.stdout, result.stdout
    assert re.search(r"^1 skipped", result.stdout.splitlines()[-1]), result.stdout


@pytest.mark.slow
def test_the_package_type_checks(tmp_path):
    """mypy, with SciPy's stubs, as pyproject.toml configures it: users' type checkers read the package (py.typed)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_the_contract_refuses_an_attribute_it_does_not_read():
    from torch_scipy_op.testing import OpContract

    with pytest.raises(
        TypeError, match=r"^TestContract: half_precison is not an attribute OpContract reads; it reads op,"
    ):

        class TestContract(OpContract):
            half_precison = False

    class TestOwn(OpContract):  # methods of its own, and pytest's marks, are the subclass's to have
        pytestmark = pytest.mark.slow
        half_precision = False

        def test_of_its_own(self):
            pass
