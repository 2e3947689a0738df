"""The template: every starter renders, and what it renders installs, lints and passes its own suite."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
from pathlib import Path

import pytest
import tomllib
import yaml
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context, generate_files
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from markdown_it import MarkdownIt

from scripts.compat import declared_floor
from template_extension import STARTERS

REPO = Path(__file__).resolve().parents[1]
UNRENDERED = re.compile(r"\{\{\s*cookiecutter|\{%|\{#")


def library_requirement(extra: str = "") -> str:
    """The requirement on torch-scipy-op that generated projects declare, with `extra`: the template's
    pyproject.toml states it, in text (a variable of the template's extension would reach `cruft update`
    from an older copy of it)."""
    text = (REPO / "{{cookiecutter.project_slug}}" / "pyproject.toml").read_text(encoding="utf-8")
    requirement = re.search(r'^dependencies = \[.*"(torch-scipy-op[^"]*)"\]$', text, re.M).group(1)
    return requirement.replace("torch-scipy-op", f"torch-scipy-op[{extra}]" if extra else "torch-scipy-op")


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
    assert passed, summary
    assert int(passed.group(1)) >= at_least, summary
    assert "failed" not in summary, summary
    assert "error" not in summary, summary


@pytest.fixture(scope="module", params=list(STARTERS))
def project(request, tmp_path_factory) -> Path:
    """A project rendered with names unlike the starter's, to prove that every name follows."""
    return render(tmp_path_factory.mktemp(request.param), **custom_names(request.param))


def test_renders_the_expected_tree(project):
    answers = custom_names(project.parent.name.rstrip("0123456789"))
    op = answers["op_name"]
    assert {str(path.relative_to(project)) for path in files(project)} == {
        ".cookiecutter.yaml",
        ".github/declared_floor.py",
        ".github/dependabot.yml",
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
        ".gitignore",
        ".pre-commit-config.yaml",
        "LICENSE",
        "README.md",
        f"benchmarks/bench_{op}.py",
        "pyproject.toml",
        "src/acme_ops/__init__.py",
        f"src/acme_ops/{op}.py",
        "src/acme_ops/py.typed",
        "tests/conftest.py",
        "tests/test_readme.py",
        f"tests/test_{op}.py",
    }


def test_nothing_is_left_unrendered_or_named_after_the_starter(project):
    starter = STARTERS[project.parent.name.rstrip("0123456789")]
    leftover = re.compile(rf"\breference(?=\.\w| import)|{starter.op_name}|{starter.class_name}")
    for path in files(project):
        text = path.read_text(encoding="utf-8")
        assert not UNRENDERED.search(text), path
        assert not leftover.search(text), f"{path}: {leftover.search(text).group()}"
        assert not UNRENDERED.search(str(path)), path


def test_python_compiles_and_passes_ruff(project):
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".", cwd=project)


def placeheld(text: str, answers: dict) -> str:
    """`text` with each name of `answers` replaced by its key in angle brackets."""
    pattern = re.compile(rf"(?<![A-Za-z0-9])({'|'.join(re.escape(v) for v in answers.values())})")
    keys = {value: f"<{key}>" for key, value in answers.items()}
    return pattern.sub(lambda match: keys[match.group()], text)


@pytest.mark.parametrize("starter", list(STARTERS))
def test_line_breaks_do_not_depend_on_the_names(starter, tmp_path):
    """Short names and the longest allowed (24 characters) render code that is lint-clean as it
    stands and the same line for line: an edit to one op's files applies to another's."""
    names = {
        "short": {"package_name": "pq", "op_name": "fq", "class_name": "Mq"},
        "long": {
            "package_name": "a_package_name_of_24_chr",
            "op_name": f"an_op_name_of_24_{starter}".ljust(24, "x"),
            "class_name": "AClassNameOf24Characters",
        },
    }
    texts = []
    for length, answers in names.items():
        project = render(tmp_path / length, starter=starter, project_slug="p", **answers)
        run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=project)
        run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".", cwd=project)
        texts.append({placeheld(str(p.relative_to(project)), answers): placeheld(p.read_text(), answers)
                      for p in project.rglob("*.py")})  # fmt: skip
    assert texts[0].keys() == texts[1].keys()
    for name in texts[0]:
        assert texts[0][name] == texts[1][name], name


def test_pyproject(project):
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert all(pin in requirements for pin in pyproject["dependency-groups"]["typecheck"])  # what the tests run
    meta = pyproject["project"]
    assert meta["name"] == project.name
    assert meta["dependencies"] == ["torch>=2.9", "numpy>=1.24", "scipy>=1.10", library_requirement()]
    assert set(meta["optional-dependencies"]) == {"cuda12", "cuda13", "test"}
    assert meta["optional-dependencies"]["test"] == [library_requirement("testing")]
    assert meta["dynamic"] == ["version"]  # from the git tag
    python = re.compile(r"Programming Language :: Python :: (3\.\d+)")
    versions = [m.group(1) for m in map(python.fullmatch, meta["classifiers"]) if m]
    assert versions == ["3.10", "3.11", "3.12", "3.13"]  # requires-python's floor to the newest that CI tests
    assert "Typing :: Typed" in meta["classifiers"]
    assert meta["urls"] == {
        "Homepage": "https://github.com/your-name/" + project.name,
        "Source": "https://github.com/your-name/" + project.name,
        "Issues": f"https://github.com/your-name/{project.name}/issues",
    }


def test_declared_floor_is_what_the_minimum_versions_job_and_this_repository_use(project):
    """CI's minimum-versions job pins exactly the floor that pyproject.toml declares, and so does compat.py."""
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["minimum-versions"]["steps"]
    (pin_step,) = [s["run"] for s in steps if s.get("run", "").endswith("> floor.txt")]
    assert pin_step.endswith("python .github/declared_floor.py > floor.txt")
    pins = run(sys.executable, ".github/declared_floor.py", cwd=project).stdout.split()
    # The package's floor, and the first release of the library's series.
    assert (
        pins
        == [*declared_floor()[1], "torch-scipy-op==0.1"]
        == [
            "torch==2.9",
            "numpy==1.24",
            "scipy==1.10",
            "torch-scipy-op==0.1",
        ]
    )
    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8").split()
    assert [pin.replace("==", ">=") for pin in pins[:3]] == requirements[3:6]  # after "# The ops"
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["requires-python"] == f">={declared_floor()[0]}"
    pythons = "fromJSON(needs.versions.outputs.pythons)"
    assert steps[1]["with"]["python-version"] == f"${{{{ {pythons}[0] }}}}"  # the oldest
    test = workflow["jobs"]["test"]
    assert test["strategy"]["matrix"]["python-version"] == f"${{{{ {pythons} }}}}"
    assert "python -m pytest" in " ".join(s.get("run", "") for s in test["steps"])
    (read,) = [s["run"] for s in workflow["jobs"]["versions"]["steps"] if s.get("id") == "read"]
    assert "python3 .github/declared_floor.py --pythons" in read


@pytest.mark.parametrize(
    ("requires", "pythons"),
    [(">=3.10", ["3.10", "3.11", "3.12", "3.13"]), (">= 3.11.2, <3.13", ["3.11", "3.12"]), ("<3.12", ["3.10", "3.11"])],
)
def test_the_python_matrix_follows_requires_python(requires, pythons, tmp_path):
    """CI tests each Python classifier that requires-python allows, and refuses a bound it cannot read."""
    script = REPO / "{{cookiecutter.project_slug}}/.github/declared_floor.py"
    text = (REPO / "{{cookiecutter.project_slug}}/pyproject.toml").read_text(encoding="utf-8")
    classifiers = re.search(r"^classifiers = \[.*?\]", text, re.MULTILINE | re.DOTALL).group()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\nrequires-python = "{requires}"\n{classifiers}\n', encoding="utf-8")
    assert json.loads(run(sys.executable, str(script), "--pythons", str(pyproject), cwd=tmp_path).stdout) == pythons
    pyproject.write_text(f'[project]\nrequires-python = "~=3.11"\n{classifiers}\n', encoding="utf-8")
    refused = subprocess.run([sys.executable, str(script), "--pythons", str(pyproject)], capture_output=True, text=True)
    assert refused.returncode == 1
    assert "requires-python: got '~=3.11'" in refused.stderr


def test_workflows_lint_once_with_least_privilege(project):
    """Lint is one job, from pre-commit's pinned ruff (this repository's too); every job reads only, checkouts
    keep no credentials, and a newer push cancels the run before it."""
    ci = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    lint = " ".join(s.get("run", "") for s in ci["jobs"]["lint"]["steps"])
    assert "pre-commit run --all-files" in lint
    assert all("ruff" not in s.get("run", "") for job in ci["jobs"].values() for s in job["steps"])
    assert ci["permissions"] == {"contents": "read"}
    assert ci["concurrency"]["cancel-in-progress"] is True
    assert ci[True] == {"push": {"branches": ["main"]}, "pull_request": None}  # YAML reads `on` as True
    release = yaml.safe_load((project / ".github/workflows/release.yml").read_text(encoding="utf-8"))
    assert release["permissions"] == {"contents": "read"}
    for workflow in (ci, release):
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False
    assert ci["jobs"]["lint"]["steps"][-1]["env"] == {"SKIP": "mypy"}  # the typecheck job runs it, with torch


def test_workflows_pass_the_security_audit(project):
    """zizmor, offline, finds nothing: actions pinned to commits, with the version each is, and dependabot
    proposes a new one after a week's cooldown."""
    for workflow in (project / ".github/workflows").glob("*.yml"):
        for action in re.findall(r"uses: (.*)", workflow.read_text(encoding="utf-8")):
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", action), action
    run(str(Path(sys.executable).with_name("zizmor")), "--offline", "--no-progress", ".", cwd=project)


HOOK_FILES = {"check-toml": ".toml", "check-yaml": ".yml", "mdformat": ".md"}  # the others take every file
HOOK_ENTRIES = {"trailing-whitespace": "trailing-whitespace-fixer"}  # where the script has another name
TESTED_ELSEWHERE = {"ruff-check", "ruff-format", "mypy", "zizmor"}


def test_pre_commit_hooks_pass(project, tmp_path):
    """Every hook of .pre-commit-config.yaml passes on a fresh project, run as pre-commit runs it on a git
    checkout, at the version it pins (this repository's requirements.txt pins the same: the hooks'
    repositories are on GitHub, which these tests do not reach)."""
    run(sys.executable, "-m", "pre_commit", "validate-config", cwd=project)
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8").split()
    source = shutil.copytree(project, tmp_path / "source")
    git("init", "-q", cwd=source)
    commit_all(source, "generated")  # check-added-large-files looks at what git adds
    tracked = git("ls-files", cwd=source).stdout.split()
    for repo in config["repos"]:
        if repo["repo"] != "local":
            distribution = repo["repo"].rsplit("/", 1)[1].removesuffix("-pre-commit")
            assert f"{distribution}=={repo['rev'].removeprefix('v')}" in requirements, repo["repo"]
        for hook in repo["hooks"]:
            if hook["id"] in TESTED_ELSEWHERE:
                continue
            entry = Path(sys.executable).with_name(HOOK_ENTRIES.get(hook["id"], hook["id"]))
            paths = [path for path in tracked if path.endswith(HOOK_FILES.get(hook["id"], ""))]
            run(str(entry), *hook.get("args", []), *paths, cwd=source)
    assert {hook["id"] for repo in config["repos"] for hook in repo["hooks"]} >= TESTED_ELSEWHERE


def test_minimum_versions_pin_any_dependency_list(project, tmp_path):
    """A hyphenated or mixed-case name, extras, markers, a bound without a floor, a list over several lines."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = [\n    "torch>=2.9",\n    "scikit-image>=0.22",\n'
        '    "PyWavelets >= 1.4, <2",\n    "zarr[jupyter]>=2.16 ; python_version >= \'3.10\'",\n'
        '    "tqdm",\n    "pooch<2",\n]\n',
        encoding="utf-8",
    )
    pins = run(sys.executable, ".github/declared_floor.py", str(pyproject), cwd=project).stdout.split()
    assert pins == ["torch==2.9", "scikit-image==0.22", "PyWavelets==1.4", "zarr==2.16"]


def test_scientific_python_repo_review(project):
    """sp-repo-review passes, but for the checks that pyproject.toml ignores, each with its reason."""
    from repo_review.processor import process

    _, results = process(project)
    assert [f"{r.name}: {r.description}" for r in results if r.result is False] == []
    ignored = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["repo-review"]["ignore"]
    assert sorted(ignored) == ["PC140", "PC170", "PY004", "PY007"]
    assert all(reason for reason in ignored.values())


def test_pyproject_is_valid(project):
    run(str(Path(sys.executable).with_name("validate-pyproject")), "pyproject.toml", cwd=project)


@pytest.mark.slow
def test_the_package_type_checks(project, tmp_path):
    """mypy, as CI's typecheck job runs it: with SciPy's stubs, CuPy's imports untyped."""
    ci = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    assert ci["jobs"]["typecheck"]["steps"][-1]["run"] == "python -m mypy"
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    run(sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), cwd=project, env=env)  # nothing left behind
    # What users' type checkers see: the op's own signature, not the decorator's (*args, **kwargs).
    names = custom_names(project.parent.name.rstrip("0123456789"))
    user = tmp_path / "user.py"
    package, op = names["package_name"], names["op_name"]
    user.write_text(f"import {package}\nreveal_type({package}.{op}.{op})\n")  # the op's module, then its function
    mypy = (sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "src", str(user))  # torch from the cache
    revealed = run(*mypy, cwd=project, env=env).stdout
    assert re.search(r'Revealed type is "def \(\w+: torch\._tensor\.Tensor.*\) -> torch\._tensor\.Tensor"', revealed)


def test_release_workflow_and_dependabot(project):
    release = yaml.safe_load((project / ".github/workflows/release.yml").read_text(encoding="utf-8"))
    assert release[True]["release"]["types"] == ["published"]  # YAML 1.1 reads the key `on` as True
    build = " ".join(s.get("run", "") for s in release["jobs"]["build"]["steps"])
    assert "python -m build" in build
    assert "twine check --strict" in build
    assert "check-wheel-contents" in build
    publish = release["jobs"]["publish"]
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["needs"] == "build"
    assert publish["steps"][-1]["uses"].startswith("pypa/gh-action-pypi-publish@")  # pinned: see the audit test
    dependabot = yaml.safe_load((project / ".github/dependabot.yml").read_text(encoding="utf-8"))
    assert [u["package-ecosystem"] for u in dependabot["updates"]] == ["github-actions"]


@pytest.mark.slow
def test_release_artifacts_pass_the_release_checks(project, tmp_path):
    """What release.yml runs before it publishes, on a git checkout tagged v1.2.3: check-sdist, the build
    (whose version is the tag's), twine and check-wheel-contents. Then the sdist's own tests pass, as
    distribution packagers run them."""
    source = shutil.copytree(project, tmp_path / "source")
    git("init", "-q", cwd=source)
    commit_all(source, "generated")
    git("tag", "v1.2.3", cwd=source)
    run(str(Path(sys.executable).with_name("check-sdist")), "--no-isolation", cwd=source)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), ".", cwd=source)
    (sdist,), (wheel,) = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    assert sdist.name == f"{project.name.replace('-', '_')}-1.2.3.tar.gz"
    assert wheel.name.startswith(f"{project.name.replace('-', '_')}-1.2.3-")
    run(sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel), cwd=tmp_path)
    run(str(Path(sys.executable).with_name("check-wheel-contents")), str(wheel), cwd=tmp_path)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    env = {**os.environ, "PYTHONPATH": str(unpacked / "src")}
    assert_suite_passes(run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=unpacked, env=env), 15)


@pytest.mark.slow
def test_generated_suite_passes(project):
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, env=env)
    assert_suite_passes(result, at_least=15)


def starter_sources(starter: str, package: str, op: str) -> dict[str, str]:
    """The files a project of `starter` copies from this repository, by their paths in a project with these
    names."""
    source_op = STARTERS[starter].op_name
    return {
        f"src/{package}/{op}.py": f"reference/{source_op}.py",
        f"tests/test_{op}.py": f"tests/test_{source_op}.py",
        "tests/test_readme.py": "tests/test_readme.py",
        f"benchmarks/bench_{op}.py": f"benchmarks/bench_{source_op}.py",
    }


@pytest.mark.parametrize("starter", list(STARTERS))
def test_op_files_are_the_reference_files(starter, tmp_path):
    """No drift: rendered with the reference names, a project holds reference/'s files unchanged."""
    project = render(tmp_path, starter=starter, package_name="reference")
    for generated, source in starter_sources(starter, "reference", STARTERS[starter].op_name).items():
        assert (project / generated).read_bytes() == (REPO / source).read_bytes(), generated
    run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".", cwd=project)


MODULE_PATH = re.compile(r"\.\w|\s+import\b")  # what follows the package's name where code names it


@pytest.mark.parametrize("starter", list(STARTERS))
def test_a_render_differs_from_its_sources_only_in_the_renamed_names(starter, tmp_path):
    """Word by word, with names that are also words of the prose: a render differs from the files it copies
    only where code names the package (a module path), the op or the class (an identifier, or a part of
    one, that starts with it: `<op>_kernel`, `bench_<op>`, `<Class>Function`). The prose keeps its words
    ("the reference")."""
    names = {"starter": starter, "package_name": "the", "op_name": "value", "class_name": "Value"}
    project = render(tmp_path, **names)
    starter_names = STARTERS[starter]
    prefixes = {starter_names.op_name: names["op_name"], starter_names.class_name: names["class_name"]}
    for generated, source in starter_sources(starter, "the", "value").items():
        old, new = (
            re.split(r"(\W+)", (REPO / source).read_text(encoding="utf-8")),
            re.split(r"(\W+)", (project / generated).read_text(encoding="utf-8")),
        )
        assert len(old) == len(new), f"{generated}: the render has other words than {source}"
        for i in range(0, len(old), 2):  # words at even positions, what separates them at odd ones
            if old[i] == new[i]:
                continue
            renamed = [re.sub(rf"(?<![A-Za-z0-9]){name}", new_name, old[i]) for name, new_name in prefixes.items()]
            if old[i] == "reference" and i + 1 < len(old) and MODULE_PATH.match(old[i + 1] + old[i + 2]):
                renamed.append(names["package_name"])
            line = "".join(old[:i]).count("\n") + 1
            assert new[i] in renamed, f"{generated}:{line}: {old[i]!r} became {new[i]!r}"
        assert [old[i] for i in range(1, len(old), 2)] == [new[i] for i in range(1, len(new), 2)], generated


BAD_ANSWERS = [
    ("package_name", "torch", "must not shadow"),
    ("package_name", "torch_scipy_op", "must not shadow"),
    ("package_name", "os", "must not shadow"),
    ("package_name", "class", "must not shadow"),
    ("package_name", "My-Ops", "lowercase Python identifier"),
    ("package_name", "1ops", "lowercase Python identifier"),
    ("op_name", "lambda", "must not shadow"),
    ("op_name", "numpy", "must not shadow"),
    ("op_name", "Tensor", "snake_case"),
    ("op_name", "my op", "snake_case"),
    ("op_name", "an_op_name_of_25_letters_", "at most 24 characters"),
    ("package_name", "a_package_name_of_25_chr_", "at most 24 characters"),
    ("class_name", "AClassNameOf25CharactersX", "at most 24 characters"),
    ("class_name", "my_module", "CamelCase"),
    ("class_name", "Tensor", "CamelCase"),
    ("project_slug", "a/b", "no '/'"),
    ("project_slug", "../escape", "no '/'"),
    ("project_slug", "a..b", "'..'"),
    ("project_slug", "back\\slash", "'\\\\'"),
    ("author_email", "not-an-email", "email address"),
    ("author_email", "a@b", "email address"),
    ("repository_url", "github.com/you/project", "https:// address"),
    ("repository_url", "https://github.com/you/project/", "trailing '/'"),
    ("repository_url", "https://github.com/you/my project", "https:// address"),
    ("version", "one", "PEP 440"),
    ("project_name", "two\nlines", "one non-empty line"),
    ("description", "\t", "one non-empty line"),
    ("author_name", "bell\a", "one non-empty line"),
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
        "description": 'Says """hi""" with \\n, a\ttab, `ticks` and # hash',
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
    """.cookiecutter.yaml holds every answer the project was made with, so it can be linked to cruft later."""
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
    assert "Ada Lovelace" in text
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    assert tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"] == license


def quick_start() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", readme, re.DOTALL).group(1)
    return block.strip().splitlines()


def test_readme_quick_start_generates_a_project(tmp_path):
    generate, test = quick_start()
    assert test.endswith("python -m pytest")
    assert "python -m pytest" in (REPO / ".ci/run").read_text()
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


def venv_with_the_library(env_dir: Path) -> str:
    """A venv that sees this interpreter's packages (torch, numpy, scipy, pytest, hatchling), whether or not
    it is itself a venv, and holds torch-scipy-op built from this checkout, as a release would install it.
    Returns its Python."""
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=env_dir).stdout.strip()
    parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "parent_site_packages.pth").write_text("\n".join(sorted(parent)) + "\n")
    # ensurepip's setuptools (before Python 3.12) would hide this interpreter's, which torch requires at 77 or newer.
    run(python, "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools", cwd=env_dir)
    install = ("-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation")
    run(python, *install, str(REPO), cwd=env_dir)
    return python


@pytest.mark.slow
def test_the_project_installs_with_no_index_where_the_library_is_installed(tmp_path):
    """The generated README's install, `pip install -e ".[test]"`, with --no-index: every requirement, the
    library's testing extra included, is met by what is installed. Then the wheel's tests pass against the
    installed package."""
    python = venv_with_the_library(tmp_path / "venv")
    project = render(tmp_path / "src", **custom_names("conv2d"))
    install = ("-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation")
    run(python, *install, "-e", ".[test]", cwd=project)
    dist = tmp_path / "dist"
    run(python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), ".", cwd=project)
    (wheel,) = dist.glob("*.whl")
    run(python, *install, "--force-reinstall", "--no-deps", str(wheel), cwd=tmp_path)
    location = run(
        python, "-c", "import acme_ops, pathlib; print(pathlib.Path(acme_ops.__file__).parent)", cwd=tmp_path
    )
    installed = Path(location.stdout.strip())
    assert installed.is_relative_to(tmp_path / "venv")
    assert (installed / "py.typed").is_file()
    library = run(python, "-c", "import torch_scipy_op; print(torch_scipy_op.__file__)", cwd=tmp_path).stdout
    assert Path(library.strip()).is_relative_to(tmp_path / "venv")
    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=project)
    assert_suite_passes(result, at_least=15)


def git(*args, cwd: Path) -> subprocess.CompletedProcess:
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t"}
    return run("git", *args, cwd=cwd, env={**os.environ, **identity, "GIT_COMMITTER_EMAIL": "t@example.com"})


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


CRUFT = str(Path(sys.executable).with_name("cruft"))  # the console script beside this Python


def cruft_create(template: Path, out: Path, starter: str) -> Path:
    """A project of `starter`, with the default names, made by `cruft create` from `template` into `out`."""
    extra = json.dumps({"starter": starter})
    run(
        CRUFT, "create", "--no-input", str(template), "--output-dir", str(out), "--extra-context", extra, cwd=out.parent
    )
    return out / "my-scipy-op"


def clone_of_this_template(template: Path) -> Path:
    """A git repository of this template's files (those git tracks, and new ones it does not ignore)."""
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout.splitlines()
    for name in listed:
        if (REPO / name).is_file():
            (template / name).parent.mkdir(parents=True, exist_ok=True)
            (template / name).write_bytes((REPO / name).read_bytes())
    git("init", "-q", cwd=template)
    commit_all(template, "template")
    return template


@pytest.mark.slow
@pytest.mark.parametrize("address", ["local", "remote"])
def test_the_printed_add_an_op_and_cruft_link_commands_run_as_printed(address, tmp_path):
    """The Quick start from a clone (`cookiecutter .`), or an address as `cookiecutter gh:...` takes one (a
    file:// repository here, as tests have no network); then the generated README's add-an-op command and
    .cookiecutter.yaml's cruft link, run exactly as printed, from the project."""
    template = clone_of_this_template(tmp_path / ("torch-scipy-op.git" if address == "remote" else "torch-scipy-op"))
    out = tmp_path / "out"
    generate = quick_start()[0].split(" && ")[-1].split()
    if address == "remote":  # a URL that cookiecutter and cruft both clone with git
        generate[1] = f"file://{template}"
    run(sys.executable, "-m", *generate, "-o", str(out), cwd=template)
    project = out / "my-scipy-op"
    readme = (project / "README.md").read_text(encoding="utf-8")
    expected = str(template) if address == "local" else f"file://{template}"
    assert add_op_command(readme)[1] == expected
    block = re.search(r"## Several ops\n.*?```bash\n(.*?)```", readme, re.DOTALL).group(1)
    (add,) = [line for line in block.splitlines() if line.startswith("cookiecutter ")]
    run(sys.executable, "-m", *shlex.split(add), cwd=project)
    # The added op starts short, and the project's suite, the op's README section included, passes.
    module, test = project / "src/my_ops/my_second_op.py", project / "tests/test_my_second_op.py"
    assert len(module.read_text(encoding="utf-8").splitlines()) <= 60
    assert len(test.read_text(encoding="utf-8").splitlines()) <= 40
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, env=env)
    assert_suite_passes(result, at_least=200)
    (link,) = re.findall(r"^#   (cruft link .*)$", (project / ".cookiecutter.yaml").read_text(encoding="utf-8"), re.M)
    git("init", "-q", cwd=project)
    commit_all(project, "generated")
    run(CRUFT, *shlex.split(link)[1:], cwd=project)
    linked = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))["template"]
    assert linked in (expected, str(template))  # cruft keeps a file:// URL as its path


@pytest.mark.slow
def test_cruft_update_brings_a_template_change_into_projects(tmp_path):
    """README's update path: a project from `cruft create`, and one from cookiecutter linked through its
    .cookiecutter.yaml, both take a later template commit with `cruft update`."""
    template = clone_of_this_template(tmp_path / "template")
    cruft = [CRUFT]
    out = tmp_path / "out"
    created = cruft_create(template, out, "blank")
    linked = render(out, starter="conv2d", project_slug="linked")
    for project in (created, linked):
        git("init", "-q", cwd=project)
        commit_all(project, "generated")
    run(*cruft, "link", str(template), "--config-file", ".cookiecutter.yaml", "-y", cwd=linked)
    commit_all(linked, "linked")

    with open(template / "{{cookiecutter.project_slug}}/README.md", "a", encoding="utf-8") as readme:
        readme.write("\nA line that a later template adds.\n")
    with open(template / "tests/test_readme.py", "a", encoding="utf-8") as test:
        test.write("\n# A comment that a later template adds.\n")
    commit_all(template, "a later template")
    for project in (created, linked):
        run(*cruft, "update", "-y", cwd=project)
        assert (project / "README.md").read_text(encoding="utf-8").endswith("A line that a later template adds.\n")
        test = (project / "tests/test_readme.py").read_text(encoding="utf-8")
        assert test.endswith("# A comment that a later template adds.\n")
        run(*cruft, "check", cwd=project)


def test_the_template_address_is_the_one_rendered_from(project):
    """The README's command that adds an op, and .cookiecutter.yaml's cruft link, name this template."""
    assert add_op_command((project / "README.md").read_text(encoding="utf-8"))[:2] == ["cookiecutter", str(REPO)]
    assert f"#   cruft link {REPO} --config-file" in (project / ".cookiecutter.yaml").read_text(encoding="utf-8")


def add_op_command(readme: str) -> list[str]:
    """The generated README's command that adds an op to the project, as a list of arguments."""
    block = re.search(r"## Several ops\n.*?```bash\n(.*?)```", readme, re.DOTALL).group(1)
    (line,) = [line for line in block.splitlines() if line.startswith("cookiecutter ")]
    return [arg for arg in line.split() if "=" not in arg]  # without the example's starter and names


# Ops added one by one to a project whose first op is `acme_first_op_of_24_chrs`, with names that the sorting
# must place as ruff does: digits (op2 before op10), a class named like a CONSTANT, and long names, whose
# `from . import` line ruff wraps.
ADDED_OPS = {
    "op10": "Op10",
    "op2": "FFT",
    "an_op_name_of_24_chars_a": "AClassNameOf24Characters",
    "an_op_name_of_24_chars_b": "B",
    "an_op_name_of_24_chars_c": "Op2",
}


def without_ruff(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """No ruff on PATH, and a `ruff` module that fails to import: as where the project's lint is not installed."""
    folder.mkdir()
    (folder / "ruff.py").write_text('raise ImportError("ruff is not installed here")\n', encoding="utf-8")
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), *paths]))
    on_path = os.environ["PATH"].split(os.pathsep)
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in on_path if not (Path(p) / "ruff").exists()))


def add_an_op(project: Path, **answers) -> None:
    """The generated README's add-an-op command, in this process: the template again, into the project, with its
    saved answers, writing only the files it does not have."""
    config = str(project / ".cookiecutter.yaml")
    keep = {"overwrite_if_exists": True, "skip_if_file_exists": True}  # -f -s
    cookiecutter(
        str(REPO), no_input=True, output_dir=str(project.parent), config_file=config, extra_context=answers, **keep
    )


@pytest.fixture(scope="module")
def added_ops(tmp_path_factory) -> Path:
    """A project of the minimal starter with ADDED_OPS, each of another starter in turn, added without ruff; the
    first of them twice."""
    folder = tmp_path_factory.mktemp("added")
    project = render(folder, starter="minimal", package_name="acme_ops", op_name="acme_first_op_of_24_chrs")
    with pytest.MonkeyPatch.context() as monkeypatch:
        without_ruff(monkeypatch, folder / "no-ruff")
        for i, (op, class_name) in enumerate([*ADDED_OPS.items(), ("op10", "Op10")]):
            add_an_op(project, starter=list(STARTERS)[i % len(STARTERS)], op_name=op, class_name=class_name)
    return project


def test_an_added_op_is_exported_as_the_lint_sorts_without_ruff(added_ops):
    init = added_ops / "src/acme_ops/__init__.py"
    run(sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "I,RUF022", str(init), cwd=added_ops)
    run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(init), cwd=added_ops)
    text = init.read_text(encoding="utf-8")
    assert "from . import (\n" in text  # the long line is wrapped
    exports = re.search(r"__all__ = \[(.*?)\]", text, re.S).group(1)
    expected = {"acme_first_op_of_24_chrs", "MinimalOp"} | ADDED_OPS.keys() | set(ADDED_OPS.values())
    assert sorted(re.findall(r'"(\w+)"', exports)) == sorted(expected)


def test_an_op_module_imports_as_its_module(added_ops):
    """`import <package>.<op> as m` gives the op's module, for the first op and an added one, and the function
    is in it."""
    ops = ["acme_first_op_of_24_chrs", "op10"]
    code = "import inspect\n" + "".join(
        f"import acme_ops.{op} as m\nassert inspect.ismodule(m), m\nassert callable(m.{op})\n" for op in ops
    )
    run(sys.executable, "-c", code, cwd=added_ops, env={**os.environ, "PYTHONPATH": str(added_ops / "src")})


def test_an_added_op_has_its_own_readme_section_once(added_ops):
    readme = (added_ops / "README.md").read_text(encoding="utf-8")
    assert readme.count("\n## op10\n") == 1  # added twice
    section = readme.split("\n## op10\n")[1].split("\n## ")[0]
    assert section.startswith("\nOp10: ")  # its module's summary
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert "from acme_ops import Op10\nfrom acme_ops.op10 import op10\n" in code
    assert "op10(" in code
    assert "Op10(" in code


def test_an_init_the_hook_cannot_edit_is_left_as_it_is_with_what_to_do(tmp_path):
    project = render(tmp_path, starter="minimal", package_name="acme_ops")
    init = project / "src/acme_ops/__init__.py"
    init.write_text('from . import minimal_op\n\n__all__ = ["minimal_op", *minimal_op.__all__]\n', encoding="utf-8")
    command = [*add_op_command((project / "README.md").read_text(encoding="utf-8")), "op_name=op2", "class_name=Op2"]
    result = subprocess.run([sys.executable, "-m", *command], cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert (
        "error: src/acme_ops/__init__.py: it has no `__all__ = [...]` that lists names as strings. Export the op by "
        'hand: add `from . import op2` and `from .op2 import Op2`, and "Op2" and "op2" to __all__.'
    ) in result.stderr
    assert init.read_text(encoding="utf-8").startswith("from . import minimal_op\n\n")
