"""The template: every starter renders, and what it renders installs, lints and passes its own suite."""

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context, generate_files
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from markdown_it import MarkdownIt

from torch_scipy_op_template import STARTERS

REPO = Path(__file__).resolve().parents[1]
UNRENDERED = re.compile(r"\{\{\s*cookiecutter|\{%|\{#")


def render(output_dir: Path, **answers) -> Path:
    return Path(cookiecutter(str(REPO), no_input=True, output_dir=str(output_dir), extra_context=answers))


def custom_names(starter: str) -> dict:
    return {
        "starter": starter,
        "project_name": f"Acme {starter}",
        "package_name": "acme_ops",
        "op_name": f"acme_{starter}",
        "class_name": f"Acme{starter.capitalize()}",
    }


def files(project: Path) -> list[Path]:
    """The project's files, without what running its tests leaves behind."""
    return sorted(path for path in project.rglob("*") if path.is_file() and "__pycache__" not in path.parts)


def run(*command, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def assert_suite_passes(result: subprocess.CompletedProcess, at_least: int) -> None:
    summary = result.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= at_least, summary
    assert "failed" not in summary and "error" not in summary, summary


@pytest.fixture(scope="module", params=list(STARTERS))
def project(request, tmp_path_factory) -> Path:
    """A project rendered with names unlike the starter's, to prove that every name follows."""
    return render(tmp_path_factory.mktemp(request.param), **custom_names(request.param))


def test_renders_the_expected_tree(project):
    answers = custom_names(project.parent.name.rstrip("0123456789"))
    op = answers["op_name"]
    assert {str(path.relative_to(project)) for path in files(project)} == {
        ".cookiecutter.yaml",
        ".github/workflows/ci.yml",
        ".gitignore",
        ".pre-commit-config.yaml",
        "LICENSE",
        "README.md",
        "benchmarks/compare.py",
        f"benchmarks/bench_{op}.py",
        "pyproject.toml",
        "src/acme_ops/__init__.py",
        "src/acme_ops/_boundary.py",
        f"src/acme_ops/{op}.py",
        "src/acme_ops/py.typed",
        "tests/conftest.py",
        "tests/test_boundary.py",
        f"tests/test_{op}.py",
    }


def test_nothing_is_left_unrendered_or_named_after_the_starter(project):
    starter = STARTERS[project.parent.name.rstrip("0123456789")]
    leftover = re.compile(rf"\breference\b|{starter.op_name}|{starter.class_name}")
    for path in files(project):
        text = path.read_text(encoding="utf-8")
        assert not UNRENDERED.search(text), path
        assert not leftover.search(text), f"{path}: {leftover.search(text).group()}"
        assert not UNRENDERED.search(str(path)), path


def test_python_compiles_and_passes_ruff(project):
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=project)


def test_pyproject(project):
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["name"] == project.name
    assert "torch>=2.5" in meta["dependencies"]
    assert set(meta["optional-dependencies"]) == {"cuda12", "cuda13", "test"}


def test_readme_usage_runs(project):
    readme = (project / "README.md").read_text(encoding="utf-8")
    (usage,) = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    run(sys.executable, "-c", usage, cwd=project, env=env)


@pytest.mark.slow
def test_generated_suite_passes(project):
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, env=env)
    assert_suite_passes(result, at_least=15)


@pytest.mark.parametrize("starter", list(STARTERS))
def test_op_files_are_the_reference_files(starter, tmp_path):
    """No drift: rendered with the reference names, a project holds reference/'s files unchanged."""
    op = STARTERS[starter].op_name
    project = render(tmp_path, starter=starter, package_name="reference")
    pairs = {
        f"src/reference/{op}.py": f"reference/{op}.py",
        "src/reference/_boundary.py": "reference/_boundary.py",
        f"tests/test_{op}.py": f"tests/test_{op}.py",
        "tests/conftest.py": "tests/conftest.py",
        "tests/test_boundary.py": "tests/test_boundary.py",
        f"benchmarks/bench_{op}.py": f"benchmarks/bench_{op}.py",
        "benchmarks/compare.py": "benchmarks/compare.py",
    }
    for generated, source in pairs.items():
        assert (project / generated).read_bytes() == (REPO / source).read_bytes(), generated
    run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".", cwd=project)


BAD_ANSWERS = [
    ("package_name", "torch", "must not shadow"),
    ("package_name", "os", "must not shadow"),
    ("package_name", "class", "must not shadow"),
    ("package_name", "My-Ops", "lowercase Python identifier"),
    ("package_name", "1ops", "lowercase Python identifier"),
    ("op_name", "lambda", "must not shadow"),
    ("op_name", "numpy", "must not shadow"),
    ("op_name", "Tensor", "snake_case"),
    ("op_name", "my op", "snake_case"),
    ("class_name", "my_module", "CamelCase"),
    ("class_name", "Tensor", "CamelCase"),
    ("project_slug", "a/b", "no '/'"),
    ("project_slug", "../escape", "no '/'"),
    ("project_slug", "a..b", "'..'"),
    ("project_slug", "back\\slash", "'\\\\'"),
    ("author_email", "not-an-email", "email address"),
    ("author_email", "a@b", "email address"),
    ("version", "one", "PEP 440"),
    ("project_name", "two\nlines", "one non-empty line"),
]


@pytest.mark.parametrize(("field", "value", "rule"), BAD_ANSWERS)
def test_bad_answers_are_refused_before_anything_is_written(field, value, rule, tmp_path):
    with pytest.raises(FailedHookException, match=rf"^{field}: {re.escape(repr(value))} .*{rule}"):
        render(tmp_path, **{field: value})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("field", "value", "rule"), BAD_ANSWERS[::4])
def test_pre_gen_hook_refuses_bad_answers_and_leaves_nothing(field, value, rule, tmp_path):
    """Callers of generate_files skip the prompts' check; the hook refuses the same answers."""
    context = generate_context(str(REPO / "cookiecutter.json"))
    answers = prompt_for_config(context, no_input=True)
    answers.update({"project_slug": "hooked", field: value})
    with pytest.raises(FailedHookException):
        generate_files(str(REPO), {"cookiecutter": answers}, output_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_unknown_choices_are_refused(tmp_path):
    with pytest.raises(ValueError, match="starter"):
        render(tmp_path, starter="fft3d")
    assert list(tmp_path.iterdir()) == []


def test_weird_strings_round_trip(tmp_path):
    weird = {
        "project_name": "Ops *for* <you> & [me] 😀",
        "project_slug": "weird-ops",
        "author_name": "O\"Brien \\ D'Arcy 😀",
        "description": 'Says """hi""" with \\n and `ticks` and # hash',
    }
    project = render(tmp_path, **weird)
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["authors"][0]["name"] == weird["author_name"]
    assert meta["description"] == weird["description"]
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    assert workflow["name"] == f"{weird['project_name']} CI"
    answers = yaml.safe_load((project / ".cookiecutter.yaml").read_text(encoding="utf-8"))["default_context"]
    assert {key: answers[key] for key in weird} == weird
    tokens = MarkdownIt().parse((project / "README.md").read_text(encoding="utf-8"))
    title, description = tokens[1].children, tokens[4].children
    assert "".join(t.content for t in title) == weird["project_name"]
    assert "".join(t.content for t in description) == weird["description"]
    assert weird["author_name"] in (project / "LICENSE").read_text(encoding="utf-8")


def test_saved_answers_render_the_same_project(project, tmp_path):
    """The update path in the README: .cookiecutter.yaml holds every answer the project was made with."""
    again = Path(
        cookiecutter(
            str(REPO), no_input=True, output_dir=str(tmp_path), config_file=str(project / ".cookiecutter.yaml")
        )
    )
    assert [p.relative_to(again) for p in files(again)] == [p.relative_to(project) for p in files(project)]
    for path in files(project):
        assert (again / path.relative_to(project)).read_bytes() == path.read_bytes(), path


@pytest.mark.parametrize("license", ["MIT", "BSD-3-Clause", "Apache-2.0"])
def test_license(license, tmp_path):
    project = render(tmp_path, license=license, author_name="Ada Lovelace")
    text = (project / "LICENSE").read_text(encoding="utf-8")
    first_words = {"MIT": "MIT License", "BSD-3-Clause": "BSD 3-Clause License", "Apache-2.0": "Apache License"}
    assert first_words[license] in text.splitlines()[0] + text.splitlines()[1]
    assert "Ada Lovelace" in text and text.endswith("\n") and not text.endswith("\n\n")
    assert tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"] == license


def quick_start() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", readme, re.DOTALL).group(1)
    return block.strip().splitlines()


def test_readme_quick_start_generates_a_project(tmp_path):
    generate, test = quick_start()
    assert test.endswith("python -m pytest") and "python -m pytest" in (REPO / ".ci/run").read_text()
    command = generate.split(" && ")[-1].split()
    assert command[:2] == ["cookiecutter", "."]
    result = run(sys.executable, "-m", *command, "-o", str(tmp_path), cwd=REPO)
    assert (tmp_path / "my-scipy-op/src/my_ops/scipy_conv2d.py").is_file()
    assert "python -m pytest" in result.stdout  # the post-generation hook's next steps


def test_cli_reports_a_bad_answer_in_one_line(tmp_path):
    command = [sys.executable, "-m", "cookiecutter", ".", "--no-input", "-o", str(tmp_path), "op_name=import"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("op_name: 'import' must not shadow a keyword")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_wheel_installs_and_its_tests_pass_against_the_installed_package(tmp_path):
    project = render(tmp_path / "src", **custom_names("conv2d"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), ".", cwd=project)
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    # torch, numpy, scipy and pytest come from this interpreter, whether or not it is itself a venv.
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "parent_site_packages.pth").write_text("\n".join(sorted(parent)) + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel), cwd=tmp_path)
    location = run(
        python, "-c", "import acme_ops, pathlib; print(pathlib.Path(acme_ops.__file__).parent)", cwd=tmp_path
    )
    installed = Path(location.stdout.strip())
    assert installed.is_relative_to(env_dir) and (installed / "py.typed").is_file()
    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=project)
    assert_suite_passes(result, at_least=15)
