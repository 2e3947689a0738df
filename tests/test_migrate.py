"""The migration of a project generated before the package: `python -m torch_scipy_op.migrate PATH`."""

import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import tomllib
from torch_scipy_op import migrate

from tests.test_declared_ops import OPS, add_op
from tests.test_template import (
    CRUFT,
    REPO,
    clone_of_this_template,
    commit_all,
    cruft_create,
    git,
    library_requirement,
    run,
)

BEFORE_THE_PACKAGE = "5ce4b2c"  # the template as it was before the package, with seven declared ops
# What the user writes after the migration's report: a reset_parameters() for each module it names, which
# deferred initialisation (a contract check the package added) needs, called at the end of __init__ (which in
# these modules comes just before forward).
RESETS = {
    "my_op": ("MyOp", "nn.init.ones_(self.weight)"),
    "fir_filter": ("FirFilter", "nn.init.zeros_(self.taps)\n        self.taps.data[len(self.taps) // 2] = 1"),
    "masked_scale": ("MaskedScale", "nn.init.ones_(self.scale)"),
    "solve_lower": (
        "SolveLower",
        "n = len(self.weight)\n        self.weight.data.copy_(torch.eye(n) + torch.randn(n, n) / n)",
    ),
}
# solve_lower's declaration into the contract perturbed the module after making it, which a module made on the
# meta device cannot repeat: the perturbation moves into reset_parameters() above.
PERTURBATION = "        with torch.no_grad():\n            layer.weight.add_(torch.randn(6, 6) / 6)\n"


def template_before_the_package(folder: Path) -> Path:
    """This repository as it was at BEFORE_THE_PACKAGE: needs the git history, which a clone has."""
    archive = folder / "template.tar"
    git("archive", "-o", str(archive), BEFORE_THE_PACKAGE, cwd=REPO)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "template", filter="data")
    return folder / "template"


def old_project_with_seven_ops(tmp_path: Path) -> Path:
    """A blank project rendered by the old template (in a process of its own, which imports that template's
    extension), with the seven ops its tests/declared_ops held, added as its test_declared_ops.py added them."""
    template = template_before_the_package(tmp_path)
    out = tmp_path / "out"
    answers = ["starter=blank", "project_slug=own-ops", "package_name=own_ops"]
    run(sys.executable, "-m", "cookiecutter", str(template), "--no-input", "-o", str(out), *answers, cwd=tmp_path)
    project, declared = out / "own-ops", template / "tests" / "declared_ops"
    for op, module in OPS.items():
        if (declared / "ops" / f"{op}.py").is_file():  # the seven it held
            add_op(project, op, module, declared)
    return project


def suite(project: Path, *select: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *select]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_an_old_project_with_seven_ops_and_an_edited_vendored_file_migrates(tmp_path):
    project = old_project_with_seven_ops(tmp_path)
    boundary = project / "src" / "own_ops" / "_boundary.py"
    with open(boundary, "a", encoding="utf-8") as file:
        file.write("\n# A change of the user's own.\n")
    git("init", "-q", cwd=project)
    commit_all(project, "generated, with seven ops")

    report = run(sys.executable, "-m", "torch_scipy_op.migrate", str(project), cwd=tmp_path).stdout
    print(report)
    # The edited file is reported and kept; every other vendored file is gone, conftest.py is the new one.
    assert "src/own_ops/_boundary.py was changed since the template generated it, so it stays" in report
    assert boundary.read_text(encoding="utf-8").endswith("# A change of the user's own.\n")
    vendored = ["_checks.py", "_derivatives.py", "_kernel_ops.py", "_op_factory.py"]
    vendored = [f"src/own_ops/{name}" for name in vendored] + ["benchmarks/compare.py"]
    vendored += [f"tests/{name}" for name in ("__init__.py", "contract.py", "helpers.py", "test_boundary.py")]
    for path in [*vendored, "tests/test_op_factory.py"]:
        assert f"removed {path}," in report
        assert not (project / path).exists(), path
    assert "tests/conftest.py: replaced with the `device` fixture" in report
    assert "torchscript" not in (project / "tests" / "test_local_max.py").read_text(encoding="utf-8")
    assert library_requirement() in (project / "pyproject.toml").read_text(encoding="utf-8")
    modules = sorted(re.findall(r"src/own_ops/(\w+)\.py: (\w+) makes parameters or buffers", report))
    assert modules == sorted((op, cls) for op, (cls, _) in RESETS.items())
    no_private = r"come from the private module"
    assert not re.search(no_private, report), report

    # The check the report named fails on the package for the modules it named, and passes for the others.
    check = "test_module_made_on_the_meta_device_initialises_as_one_made_normally"
    before = suite(project, "-k", check)
    failed = sorted(re.findall(r"^FAILED tests/test_(\w+)\.py::TestContract::(\w+)", before.stdout, re.M))
    assert failed == [(op, check) for op in sorted(RESETS)], before.stdout[-3000:]
    assert re.search(r"^4 failed, [1-9]\d* passed", before.stdout.strip().splitlines()[-1]), before.stdout[-3000:]
    # The user adds reset_parameters(), as the report says; then the whole suite passes.
    for op, (cls, body) in RESETS.items():
        module = project / "src" / "own_ops" / f"{op}.py"
        text = module.read_text(encoding="utf-8")
        method = "        self.reset_parameters()\n\n"
        method += f"    def reset_parameters(self) -> None:\n        {body}\n\n    def forward("
        start = text.index(f"class {cls}(")
        text = text[:start] + text[start:].replace("\n    def forward(", method, 1)
        module.write_text(text, encoding="utf-8")
    test = project / "tests" / "test_solve_lower.py"
    test.write_text(test.read_text(encoding="utf-8").replace(PERTURBATION, ""), encoding="utf-8")
    after = suite(project)
    summary = after.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"=* ?\d+ passed, \d+ skipped in .*", summary), after.stdout[-3000:]
    assert int(re.search(r"(\d+) passed", summary).group(1)) > 500


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


ANSWERS = """default_context:
  starter: "blank"
  package_name: "acme"
  op_name: "my_op"
  class_name: "MyOp"
"""
OP_MODULE = """
from ._boundary import ArrayBackend, run_kernel
from ._op_factory import declare_op

try:
    from ._boundary import CUPY  # indented, in a try
except ImportError:
    CUPY = None


def swapped_kernel(backend: ArrayBackend, weight, x):
    return x * weight


swapped_declared = declare_op(
    f"{__package__}::swapped", "(Tensor x, Tensor weight) -> Tensor", forward=swapped_kernel
)
"""
TEST_MODULE = """
from tests.contract import OpContract
from tests.helpers import (
    assert_matches,  # compare (values and grads)
    needs_cupy,
    round_trip,  # a private helper
)
from benchmarks.compare import main


class TestContract(OpContract):
    samples = ()
    torchscript = False


def test_scripted():
    torchscript = torch.jit.script  # the user's own name, which stays
"""


def small_project(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            ".cookiecutter.yaml": ANSWERS,
            "pyproject.toml": '[project]\ndependencies = [\n    "pooch[progress]>=1.8",  # a ] in a comment\n]\n'
            '[project.optional-dependencies]\ntest = ["pytest>=8", "hypothesis"]\n',
            "src/acme/__init__.py": "",
            "src/acme/swapped.py": OP_MODULE,
            "src/acme/_boundary.py": "# not a version the template ever generated\n",
            "tests/test_swapped.py": TEST_MODULE,
        },
    )


def test_imports_become_the_public_api_and_private_names_are_reported(tmp_path):
    project = small_project(tmp_path)
    report = str(migrate.migrate(project))
    op = (project / "src/acme/swapped.py").read_text(encoding="utf-8")
    assert "from torch_scipy_op import ArrayBackend\nfrom torch_scipy_op._boundary import run_kernel\n" in op
    assert "from torch_scipy_op import declare_op\n" in op
    assert "try:\n    from torch_scipy_op._boundary import CUPY  # indented, in a try\nexcept" in op
    test = (project / "tests/test_swapped.py").read_text(encoding="utf-8")
    assert "from torch_scipy_op.testing import OpContract\n" in test
    assert "from torch_scipy_op.testing import assert_matches, needs_cupy\n" in test
    assert "from torch_scipy_op.testing._helpers import round_trip  # compare (values and grads) # a private" in test
    assert "from torch_scipy_op.testing.benchmark import main\n" in test
    assert "    torchscript = False\n" not in test
    assert "    torchscript = torch.jit.script  # the user's own name, which stays\n" in test
    assert "src/acme/swapped.py: run_kernel come from the private module torch_scipy_op._boundary" in report
    assert "tests/test_swapped.py: round_trip come from the private module torch_scipy_op.testing._helpers" in report
    assert "src/acme/_boundary.py was changed since the template generated it, so it stays" in report
    assert (project / "src/acme/_boundary.py").is_file()
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert pyproject["dependencies"] == [library_requirement(), "pooch[progress]>=1.8"]
    assert pyproject["optional-dependencies"]["test"] == [library_requirement("testing"), "pytest>=8", "hypothesis"]
    again = str(migrate.migrate(project))  # a second run finds nothing more to do
    assert "imports from torch_scipy_op in" not in again
    assert "conftest" not in again


def test_a_forward_kernel_bound_by_position_is_flagged(tmp_path):
    report = str(migrate.migrate(small_project(tmp_path)))
    assert (
        "src/acme/swapped.py: the forward kernel swapped_kernel takes (weight, x) where the schema's arguments are "
        "(x, weight). It was called by position; the package calls kernels by name" in report
    )


def test_a_dry_run_changes_nothing(tmp_path):
    project = small_project(tmp_path)
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    report = str(migrate.migrate(project, dry_run=True))
    assert "imports from torch_scipy_op in src/acme/swapped.py, tests/test_swapped.py" in report
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_a_changed_conftest_stays_with_its_imports_rewritten(tmp_path):
    project = small_project(tmp_path)
    write(project, {"tests/conftest.py": "from tests.helpers import needs_cuda\n\nMINE = 1\n"})
    report = str(migrate.migrate(project))
    assert "tests/conftest.py was changed since the template generated it, so it stays, with its imports " in report
    assert "the op tests need its `device` fixture" in report
    conftest = (project / "tests/conftest.py").read_text(encoding="utf-8")
    assert conftest == "from torch_scipy_op.testing import needs_cuda\n\nMINE = 1\n"


def test_a_file_that_does_not_parse_stops_it_before_anything_changes(tmp_path):
    project = small_project(tmp_path)
    write(project, {"tests/test_broken.py": "def broken(:\n"})
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match=r"migrate: tests/test_broken.py does not parse .*nothing was changed"):
        migrate.migrate(project)
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_a_folder_that_is_not_a_generated_project_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"migrate: PATH must be a project generated by the template, with its "):
        migrate.migrate(tmp_path)


def test_what_the_migration_writes_is_what_the_template_generates():
    """The requirement and the conftest.py it writes are the template's, and its fingerprints of the vendored
    files are up to date with this repository's history."""
    assert migrate._REQUIREMENT.format(extra="") == library_requirement()
    conftest = REPO / "{{cookiecutter.project_slug}}" / "tests" / "conftest.py"
    assert conftest.read_text(encoding="utf-8") == migrate._CONFTEST
    run(sys.executable, "scripts/vendored_hashes.py", "--check", cwd=REPO)


@pytest.mark.slow
def test_cruft_update_brings_a_project_of_before_the_package_onto_it(tmp_path):
    """A project made with `cruft create` before the package takes it with `cruft update`, as any template change:
    the vendored files go, the requirement comes, and its suite passes on the package."""
    template = template_before_the_package(tmp_path)
    git("init", "-q", cwd=template)
    commit_all(template, "before the package")
    project = cruft_create(template, tmp_path / "out", "blank")
    git("init", "-q", cwd=project)
    commit_all(project, "generated")
    git("rm", "-rq", ".", cwd=template)
    clone_of_this_template(template)  # the template as it is now, as its next commit
    run(CRUFT, "update", "-y", cwd=project)
    assert not (project / "src" / "my_scipy_op" / "_op_factory.py").exists()
    assert not (project / "tests" / "contract.py").exists()
    assert library_requirement() in (project / "pyproject.toml").read_text(encoding="utf-8")
    result = suite(project)
    assert re.fullmatch(r"\d+ passed in .*", result.stdout.strip().splitlines()[-1]), result.stdout[-3000:]
